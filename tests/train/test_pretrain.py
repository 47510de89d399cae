"""End-to-end pretraining on real (synthetic) video files: one epoch, resume, bad files, outputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tclr_zoo.hub.checkpoint import load_checkpoint
from tclr_zoo.hub.format import load_pretrained_dir
from tclr_zoo.losses import LOSS_KEYS
from tclr_zoo.train.config import RecipeError, ResumeRequest
from tclr_zoo.train.pretrain import pretrain


def _quiet(_msg: str) -> None:
    pass


def test_one_epoch_run_writes_model_checkpoints_logs_and_results(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    results = pretrain(tiny_recipe(), out, progress=False, log=_quiet)
    for key in ("knn_r1", "knn_r1_random_init", "epochs", "wall_seconds", "clips_per_second"):
        assert key in results
    assert results["epochs"] == 1 and results["clips_per_second"] > 0
    assert 0.0 <= results["knn_r1"] <= 1.0 and results["knn"]["queries"] == 6 and results["knn"]["gallery"] == 12
    assert json.loads((out / "results.json").read_text())["knn_r1"] == results["knn_r1"]
    # saved-model layout: config + safetensors + card, loadable and equal to the trained weights
    model, config = load_pretrained_dir(out / "model")
    assert config["preprocessing"]["channel_order"] == "bgr" and config["architecture"] == "r3d_10_025"
    assert "model-index" in (out / "model" / "README.md").read_text()
    state = load_file(str(out / "model" / "model.safetensors"))
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    for key, value in ckpt["model"].items():
        torch.testing.assert_close(state[key], value)
    assert (out / "checkpoints" / "best.pt").is_file()
    assert "loss/total" in (out / "logs" / "metrics.csv").read_text()
    assert not list(out.rglob(".*.tmp-*"))  # atomic writes leave no temporary files


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tiny_recipe, tmp_path):
    straight = pretrain(tiny_recipe(**{"train.epochs": 2, "eval.knn": "false"}), tmp_path / "a",
                        progress=False, log=_quiet)
    pretrain(tiny_recipe(**{"train.epochs": 1, "eval.knn": "false"}), tmp_path / "b", progress=False, log=_quiet)
    resumed = pretrain(tiny_recipe(**{"train.epochs": 2, "eval.knn": "false"}), tmp_path / "b", resume=True,
                       progress=False, log=_quiet)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    for a, b in zip(straight["history"], resumed["history"]):
        for key in ("total", "ic_global", "ic_local", "local_local", "global_local", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["epoch"], key)
    last_a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    last_b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    for key in last_a:
        torch.testing.assert_close(last_a[key], last_b[key], atol=1e-5, rtol=1e-4)


def test_bad_files_are_skipped_logged_once_and_counted(copied_dataset, tiny_recipe, tmp_path):
    split = copied_dataset / "ucfTrainTestlist" / "trainlist01.txt"
    lines = split.read_text().splitlines()
    first_class = lines[0].split("/")[0]
    corrupt = copied_dataset / "UCF-101" / first_class / "v_corrupt_g09_c01.mp4"
    corrupt.write_bytes(b"garbage" * 100)
    short = copied_dataset / "UCF-101" / first_class / "v_short_g09_c02.mp4"
    short.write_bytes((copied_dataset / "UCF-101" / lines[0].split()[0]).read_bytes()[:1500])  # truncated
    split.write_text("\n".join(lines + [f"{first_class}/{corrupt.name} 1", f"{first_class}/{short.name} 1"]) + "\n")
    messages: list[str] = []
    recipe = tiny_recipe(**{"data.root": str(copied_dataset), "train.epochs": 2, "eval.knn": "false"})
    results = pretrain(recipe, tmp_path / "run", progress=False, log=messages.append)
    skipped = [m for m in messages if m.startswith("skipping")]
    assert len(skipped) == 2  # logged once per file although both epochs meet them
    assert any(str(corrupt) in m for m in skipped) and any(str(short) in m for m in skipped)
    assert [row["bad_files"] for row in results["history"]] == [2, 2]  # both files, in each epoch
    assert results["bad_files"] == 4
    assert any("bad files skipped" in m for m in messages)


def test_ic_only_ablation_trains_without_temporal_losses(tiny_recipe, tmp_path):
    results = pretrain(tiny_recipe(**{"train.ic_only": "true", "eval.knn": "false"}), tmp_path / "ic",
                       progress=False, log=_quiet)
    row = results["history"][0]
    assert row["total"] == pytest.approx(row["ic_global"] + row["ic_local"], rel=1e-5)


def test_resume_without_checkpoint_and_corrupt_checkpoint_are_clear_errors(tiny_recipe, tmp_path):
    with pytest.raises(RecipeError, match="no checkpoint"):
        pretrain(tiny_recipe(), tmp_path / "none", resume=True, progress=False, log=_quiet)
    bad = tmp_path / "bad" / "checkpoints"
    bad.mkdir(parents=True)
    (bad / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RecipeError, match="last.pt: not a readable checkpoint"):
        pretrain(tiny_recipe(), tmp_path / "bad", resume=True, progress=False, log=_quiet)


def test_frames_that_do_not_match_the_local_clips_are_a_recipe_error(tiny_recipe, tmp_path):
    with pytest.raises(RecipeError, match=r"data.frames=8 into 2 time-steps.*data.num_local=4"):
        pretrain(tiny_recipe(**{"data.frames": 8}), tmp_path / "run", progress=False, log=_quiet)


def test_the_saved_model_records_its_recipes_reference_numbers_and_its_card_quotes_them(tiny_recipe, tmp_path):
    """The recipe's reference (here the paper's row, named as the UCF101 recipe names it) goes into
    config.json when training ends; the card reads it from there, never from the recipe (named demo)."""
    from tclr_zoo.models.pretrained import PAPER_RESULTS

    out = tmp_path / "run"
    recipe = tiny_recipe(**{"eval.knn": "false", "train.max_steps_per_epoch": 1,
                            "reference.published": "r3d_18.tclr_ucf101"})
    pretrain(recipe, out, progress=False, log=_quiet)
    config = json.loads((out / "model" / "config.json").read_text())
    paper = PAPER_RESULTS["r3d_18.tclr_ucf101"]
    assert config["training"]["reference"] == paper and config["training"]["recipe"] == "demo"
    card = (out / "model" / "README.md").read_text()
    assert "| kNN retrieval R@1 | UCF101 | 0.5620 | paper (Dave et al., arXiv 2101.07974) |" in card
    assert "| kNN retrieval R@1 | UCF101 | 0.5610 | reference code README (DAVEISHAN/TCLR) |" in card


def _old_key(key: str) -> str:
    """A state-dict key as files written before the projection head was called ``projection`` have it."""
    return "head." + key.removeprefix("projection.") if key.startswith("projection.") else key


def test_checkpoints_and_saved_models_written_with_the_old_head_keys_still_load(tiny_run, tmp_path):
    """Before the projection head was called ``projection`` its keys were ``head.*``: such a run resumes
    exactly as the same run written today, and such a saved model loads the same weights."""
    from safetensors.torch import save_file

    import tclr_zoo
    from tclr_zoo.atomic import file_sha256
    from tclr_zoo.train.checkpoint import save_checkpoint

    new, old = tmp_path / "new", tmp_path / "old"
    shutil.copytree(tiny_run, new)
    shutil.copytree(tiny_run, old)
    state = load_checkpoint(new / "checkpoints" / "last.pt")
    assert any(k.startswith("projection.") for k in state["model"])
    save_checkpoint(old / "checkpoints" / "last.pt", {**state, "model": {_old_key(k): v for k, v in
                                                                         state["model"].items()}})
    weights = load_file(str(new / "model" / "model.safetensors"))
    save_file({_old_key(k): v for k, v in weights.items()}, str(old / "model" / "model.safetensors"))
    config = json.loads((old / "model" / "config.json").read_text())
    config["weights_sha256"] = file_sha256(old / "model" / "model.safetensors")  # as the old writer recorded it
    (old / "model" / "config.json").write_text(json.dumps(config))
    loaded = tclr_zoo.load_model(old / "model").torch_model.state_dict()
    assert loaded.keys() == weights.keys() and all(torch.equal(loaded[k], weights[k]) for k in weights)
    longer = {"train.epochs": 2, "eval.knn": "false"}
    resumed = [pretrain(ResumeRequest(tuple(f"{k}={v}" for k, v in longer.items())), run, resume=True,
                        progress=False, log=_quiet) for run in (new, old)]
    losses = [[{k: row[k] for k in (*LOSS_KEYS, "lr")} for row in run["history"]] for run in resumed]
    assert losses[0] == losses[1] and len(losses[1]) == 2
