"""Downstream protocols through the library and the CLI: retrieval, linear probe, fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch
import warm_python

from tclr_zoo.hub.format import load_pretrained_dir, model_config, save_pretrained
from tclr_zoo.hub.resolve import resolve_model
from tclr_zoo.models.registry import ModelNotFoundError, create_model, resolve_model_args
from tclr_zoo.train.config import RecipeError
from tclr_zoo.train.protocols import protocol_settings, run_protocol

CLI = warm_python.CLI
FAST = {"epochs": 1, "batch_size": 4, "size": 32, "test_clips": 2, "workers": 0}
PREPROCESSING = {"channel_order": "bgr", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 32,
                 "crop_fraction": 0.8, "frames": 16, "eval_frame_stride": 2, "pretrain_frame_stride": 4,
                 "eval_protocol": {"clips": 9, "pooling": "temporal", "similarity": "cosine"}}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("r3d_10_025", head_dim=32)
    config = model_config(model, arch="r3d_10_025", model_args=resolve_model_args("r3d_10_025"),
                          preprocessing=PREPROCESSING)
    return save_pretrained(model, tmp_path_factory.mktemp("model") / "encoder", config)


def _quiet(_msg):
    pass


def test_retrieval_result_has_the_documented_keys(saved_model, tiny_dataset):
    result = run_protocol(str(saved_model), "retrieval", "ucf101", tiny_dataset,
                          overrides={"clips": 2, "ks": [1, 5]}, log=_quiet)
    assert {"R@1", "R@5", "model", "protocol", "dataset", "split", "parameters", "versions"} <= set(result)
    assert result["queries"] == 6 and result["gallery"] == 12 and result["feature_dim"] == 128 * 4
    assert set(result["versions"]) == {"tclr_zoo", "torch", "av"}
    pooled = run_protocol(str(saved_model), "retrieval", "ucf101", tiny_dataset,
                          overrides={"clips": 2, "ks": [1], "pooling": "projection"}, log=_quiet)
    assert pooled["feature_dim"] == 32


def test_linear_probe_trains_only_the_classifier(saved_model, tiny_dataset):
    result = run_protocol(str(saved_model), "linear", "ucf101", tiny_dataset, overrides=FAST, log=_quiet)
    for key in ("top1", "top5", "clip_top1", "clip_top5"):
        assert 0.0 <= result[key] <= 1.0
    assert result["videos"] == 6 and result["classes"] == 3 and result["parameters"]["lr"] == 1e-2
    assert len(result["history"]) == 1


def test_linear_probe_keeps_backbone_weights_and_finetuning_changes_them(saved_model, tiny_dataset):
    from tclr_zoo.data.datasets import load_split
    from tclr_zoo.train.finetune import build_classifier, train_classifier

    train = load_split("ucf101", tiny_dataset, subset="train")
    for protocol in ("linear", "finetune"):
        encoder, config, _ = resolve_model(saved_model)
        before = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
        settings = protocol_settings(protocol, FAST)
        classifier = build_classifier(encoder, len(train.class_names), settings)
        train_classifier(classifier, train.items, settings, preprocessing=config["preprocessing"],
                         device=torch.device("cpu"), log=_quiet)
        weights = [k for k in before if k.endswith("weight") and before[k].dim() == 5]
        changed = [k for k in weights if not torch.equal(before[k], classifier.backbone.state_dict()[k])]
        assert (changed == []) if protocol == "linear" else (len(changed) == len(weights)), protocol
        stats = [k for k in before if k.endswith("running_mean")]
        assert any(not torch.equal(before[k], classifier.backbone.state_dict()[k]) for k in stats)  # BN in train mode


def test_eval_cli_writes_json_and_prints_a_table(saved_model, tiny_dataset, tmp_path):
    out = tmp_path / "linear.json"
    args = ["eval", str(saved_model), "--protocol", "linear", "--dataset", "ucf101", "--root", str(tiny_dataset),
            "--out", str(out), "--device", "cpu", "--no-progress"] + [a for k, v in FAST.items()
                                                                      for a in ("--set", f"{k}={v}")]
    result = warm_python.run(CLI + args, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "top1" in result.stdout and "clip_top5" in result.stdout
    data = json.loads(out.read_text())
    assert data["protocol"] == "linear" and data["dataset"] == "ucf101" and data["split"] == 1
    assert data["model"] == str(saved_model) and data["parameters"]["test_clips"] == 2


def test_finetune_recipe_from_the_command_line(saved_model, tiny_dataset, tmp_path):
    out, saved = tmp_path / "ft.json", tmp_path / "classifier"
    sets = [f"model={saved_model}", f"data.root={tiny_dataset}"] + [f"settings.{k}={v}" for k, v in FAST.items()]
    result = warm_python.run(CLI + ["finetune", "finetune_r3d18_ucf101", "--out", str(out), "--save", str(saved),
                                    "--device", "cpu", "--no-progress"] + [a for s in sets for a in ("--set", s)],
                             timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["protocol"] == "finetune" and data["reference"]["paper_top1"] == 0.824
    assert "reference paper_top1: 0.824" in result.stdout
    # the saved classifier keeps the recipe's published numbers beside its own result
    training = json.loads((saved / "config.json").read_text())["training"]
    assert training["reference"] == {"paper_top1": 0.824, "repo_readme_top1": 0.82}
    assert training["top1"] == data["top1"]


def test_pretraining_checkpoint_is_accepted_as_model(tiny_recipe, tmp_path, tiny_dataset):
    from tclr_zoo.train.pretrain import pretrain

    pretrain(tiny_recipe(**{"eval.knn": "false"}), tmp_path / "run", progress=False, log=_quiet)
    from_ckpt, _, _ = resolve_model(tmp_path / "run" / "checkpoints" / "last.pt")
    from_dir, _ = load_pretrained_dir(tmp_path / "run" / "model")
    for key, value in from_dir.state_dict().items():
        torch.testing.assert_close(from_ckpt.state_dict()[key], value)
    result = run_protocol(str(tmp_path / "run" / "checkpoints" / "last.pt"), "retrieval", "ucf101", tiny_dataset,
                          overrides={"clips": 2, "ks": [1]}, log=_quiet)
    assert 0.0 <= result["R@1"] <= 1.0


def test_bad_protocol_settings_are_clear_errors(saved_model, tiny_dataset):
    with pytest.raises(RecipeError, match="unknown protocol setting 'epochz'"):
        protocol_settings("linear", {"epochz": 1})
    # the one resolver's one-line error, as every command gives it (was FileNotFoundError "no saved model")
    with pytest.raises(ModelNotFoundError, match="/nonexistent/model: no such folder"):
        run_protocol("/nonexistent/model", "retrieval", "ucf101", tiny_dataset, log=_quiet)


@pytest.fixture(scope="module", params=["ucf101", "hmdb51", "kinetics400"])
def layout_dataset(request, tmp_path_factory):
    from conftest import TINY_SYNTHETIC

    from tclr_zoo.data.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp(request.param) / "data"
    return request.param, generate(root, SyntheticConfig(**TINY_SYNTHETIC, layout=request.param))


@pytest.mark.parametrize("protocol, settings", [
    ("retrieval", {"clips": 2, "ks": "[1,5]"}),
    ("linear", FAST),
    ("finetune", {**FAST, "test_crops": 3}),
])
def test_every_protocol_runs_on_every_official_layout(saved_model, layout_dataset, protocol, settings, tmp_path):
    layout, root = layout_dataset
    out = tmp_path / "result.json"
    args = ["eval", str(saved_model), "--protocol", protocol, "--dataset", layout, "--root", str(root),
            "--out", str(out), "--device", "cpu", "--no-progress"]
    args += [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    result = warm_python.run(CLI + args, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["dataset"] == layout and data["protocol"] == protocol and data["model"] == str(saved_model)
    keys = ("R@1", "R@5") if protocol == "retrieval" else ("top1", "top5", "clip_top1", "clip_top5")
    assert all(0.0 <= data[k] <= 1.0 for k in keys)
    assert set(data["versions"]) == {"tclr_zoo", "torch", "av"} and "parameters" in data


def test_saved_finetuned_model_keeps_classifier_and_labels(saved_model, tiny_dataset, tmp_path):
    from tclr_zoo.data.datasets import EvalClipsDataset, load_split

    target = tmp_path / "finetuned"
    result = run_protocol(str(saved_model), "finetune", "ucf101", tiny_dataset, overrides=FAST, log=_quiet,
                          save_dir=target)
    model, config = load_pretrained_dir(target)
    test = load_split("ucf101", tiny_dataset, subset="test")
    assert config["labels"] == test.class_names and model.classifier.out_features == 3
    assert config["training"]["top1"] == result["top1"]
    clips = EvalClipsDataset(test.items[:2], clips=1, size=32)
    batch = torch.stack([clips[i][0][0] for i in range(2)])
    with torch.no_grad():
        assert model.logits(batch).shape == (2, 3)
    # the saved model is a model like any other: it can be evaluated again
    again = run_protocol(str(target), "retrieval", "ucf101", tiny_dataset, overrides={"clips": 2, "ks": [1]},
                         log=_quiet)
    assert 0.0 <= again["R@1"] <= 1.0
    with pytest.raises(RecipeError, match="--save applies to linear and finetune"):
        run_protocol(str(saved_model), "retrieval", "ucf101", tiny_dataset, log=_quiet, save_dir=tmp_path / "x")


def test_model_without_classifier_says_so():
    model = create_model("r3d_10_025")
    with pytest.raises(ValueError, match="no classifier"):
        model.logits(torch.zeros(2, 3, 16, 32, 32))


# ---- numbers that mean what they say ---------------------------------------------------------------

def test_clip_settings_default_to_the_models_own_and_the_saved_classifier_records_them(saved_model, tiny_dataset,
                                                                                       tmp_path):
    """saved_model works at 32x32, 16 frames, stride 2: a probe run without --set size=... must use that
    (not 112, where it scored chance), and a saved classifier records what it was trained with."""
    from tclr_zoo import load_model

    settings = {k: v for k, v in FAST.items() if k != "size"}
    target = tmp_path / "probe"
    result = run_protocol(str(saved_model), "linear", "ucf101", tiny_dataset, overrides=settings, log=_quiet,
                          save_dir=target)
    geometry = ("size", "frames", "stride", "crop_fraction")
    assert {k: result["parameters"][k] for k in geometry} == {"size": 32, "frames": 16, "stride": 2,
                                                              "crop_fraction": 0.8}
    assert result["evaluation"]["settings"] == {"clips": 2, "crops": 1, "frames": 16, "stride": 2, "size": 32,
                                                "crop_fraction": 0.8}
    # an explicit setting wins, and the saved classifier records it: classify() then feeds it that input
    wide = tmp_path / "wide"
    run_protocol(str(saved_model), "linear", "ucf101", tiny_dataset, overrides={**settings, "size": 48, "stride": 1},
                 log=_quiet, save_dir=wide)
    loaded = load_model(wide)
    assert loaded.size == 48 and loaded.config["preprocessing"]["eval_frame_stride"] == 1
    assert loaded.config["evaluation"][0]["settings"]["size"] == 48
    # the card says what happened: synthetic videos in UCF101's layout, this folder, no UCF101 biases
    card = (target / "README.md").read_text()
    assert "**linear** protocol on `synthetic (tclr-zoo generated, ucf101 layout)`" in card
    assert "on `ucf101`" not in card and "hf-hub:ORG/REPO\")" not in card
    assert f'load_model("{target}")' in card
    limitations = card.split("## Limitations")[1].split("## Citation")[0]
    assert "Demo model" in limitations and "UCF101" not in limitations and "YouTube" not in limitations
    assert "| top-1 accuracy | synthetic (tclr-zoo generated, ucf101 layout) |" in card
    assert "linear protocol: trained on train split 1, tested on test split 1; 2 clips x 16 frames at stride 2, " \
           "32 px, centre crop 0.8" in card


def test_eval_retrieval_reproduces_the_runs_own_knn_numbers(tiny_run, tiny_dataset):
    """The R@1 in results.json and on the card is what `tclr-zoo eval --protocol retrieval` measures on the
    same data: the protocol takes the model's own clip count (2 here), and both say which settings."""
    results = json.loads((tiny_run / "results.json").read_text())
    again = run_protocol(str(tiny_run / "model"), "retrieval", "ucf101", tiny_dataset, overrides={"ks": [1, 5]},
                         log=_quiet)
    assert again["parameters"]["clips"] == results["knn_protocol"]["clips"] == 2
    assert {k: again[k] for k in ("R@1", "R@5")} == {k: results["knn"][k] for k in ("R@1", "R@5")}
    config = json.loads((tiny_run / "model" / "config.json").read_text())
    (record,) = config["evaluation"]
    assert record["metrics"] == {"R@1": results["knn"]["R@1"], "R@5": results["knn"]["R@5"]}
    assert record["settings"] == again["evaluation"]["settings"]
    card = (tiny_run / "model" / "README.md").read_text()
    assert f"| kNN retrieval R@1 | synthetic (tclr-zoo generated, ucf101 layout) | {results['knn_r1']:.4f} |" in card
    assert "test split 1 queries train split 1; 2 clips x 16 frames at stride 2, 32 px" in card


def test_the_old_pooling_setting_names_a_head_with_a_one_line_note(saved_model, tiny_dataset):
    """Retrieval's ``pooling`` (temporal / pooled / projection) is the SDK's ``head`` now; recipes and
    --set values that still say pooling run as before, with a note mapping the old name to the new."""
    from tclr_zoo.hub.card_metadata import protocol_text

    notes = []
    old = run_protocol(str(saved_model), "retrieval", "ucf101", tiny_dataset,
                       overrides={"clips": 1, "ks": [1], "pooling": "pooled"}, log=notes.append)
    new = run_protocol(str(saved_model), "retrieval", "ucf101", tiny_dataset,
                       overrides={"clips": 1, "ks": [1], "head": "backbone"}, log=_quiet)
    assert notes[0] == "note: setting pooling=pooled is deprecated; it is head=backbone now"
    assert old["R@1"] == new["R@1"] and old["feature_dim"] == new["feature_dim"] == 128
    assert old["evaluation"]["settings"]["head"] == old["parameters"]["head"] == "backbone"
    assert "pooling" not in old["parameters"] and "; backbone head; cosine" in protocol_text(old["evaluation"])
    with pytest.raises(RecipeError, match=r"^setting pooling='max': pooling is now head, one of backbone, "):
        run_protocol(str(saved_model), "retrieval", "ucf101", tiny_dataset, overrides={"pooling": "max"}, log=_quiet)
    with pytest.raises(RecipeError, match=r"^setting head must be one of backbone, retrieval, projection, got 'pool"):
        protocol_settings("retrieval", {"head": "pooled"})
