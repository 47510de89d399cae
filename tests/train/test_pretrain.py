"""End-to-end pretraining on real (synthetic) video files: one epoch, resume, bad files, outputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tclr_zoo.hub.format import load_pretrained_dir
from tclr_zoo.train.checkpoint import load_checkpoint
from tclr_zoo.train.config import RecipeError
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
