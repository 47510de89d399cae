"""Model cards: the MODEL_CARD.md template filled from config.json + results (front matter, sections)."""

from __future__ import annotations

import copy
from importlib import resources

import pytest
import yaml
from huggingface_hub import ModelCard

from tclr_zoo.hub.card import card_results, parse_front_matter, render_model_card
from tclr_zoo.hub.format import model_config, save_pretrained
from tclr_zoo.models.preprocessing import Preprocessing
from tclr_zoo.models.pretrained import published_reference

DEMO_PRE = {**Preprocessing().to_config(), "size": 32, "eval_protocol": {"clips": 5, "pooling": "temporal",
                                                                     "similarity": "cosine"}}
DEMO_RESULTS = {"knn_r1": 0.8611, "knn_r1_random_init": 0.4167, "dataset": "synthetic/split1"}
# What pretraining records in config.json (training.reference) for tclr_r3d18_ucf101: its recipe's numbers.
PAPER_ROW = published_reference("r3d_18.tclr_ucf101")


def demo_config(**extra):
    """What pretrain() writes for the demo recipe (r3d_10_025, 16 frames -> 4 time-steps)."""
    config = {
        "library": "tclr_zoo", "library_version": "0.1.0", "architecture": "r3d_10_025",
        "model_args": {"kind": "r3d", "widths": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}, "head_dim": 64,
        "embedding_dims": {"backbone": 128, "retrieval": 512, "projection": 64}, "labels": None,
        "preprocessing": copy.deepcopy(DEMO_PRE),
        "training": {"recipe": "demo", "dataset": "synthetic/split1", "epochs": 22},
    }
    config.update(extra)
    return config


def classifier_config():
    labels = [f"class_{i}" for i in range(101)]
    training = {"protocol": "finetune", "dataset": "ucf101/split1", "top1": 0.7, "top5": 0.9,
                "from": {"recipe": "tclr_r3d18_ucf101", "dataset": "ucf101/split1", "epochs": 300,
                         "reference": PAPER_ROW}}
    return demo_config(labels=labels, training=training)


def exported_config():
    export = {"head": "retrieval", "input": {"name": "video", "dtype": "float32", "shape": ["batch", 3, 16, 32, 32]},
              "output": {"name": "retrieval", "dtype": "float32", "shape": ["batch", 512]}, "max_batch": 8,
              "opset": 18, "exporter": "dynamo",
              "onnx": {"fp32": "onnx/model.onnx", "report": "onnx/export_report.json"}}
    return demo_config(export=export)


EXPORT_REPORT = {"parity_inputs": "random [0,1], seed 0", "parity_batch_sizes": [1, 3, 8], "parity": {
    "model.onnx": {"precision": "fp32", "provider": "CPUExecutionProvider",
                   "batches": [{"batch_size": 1, "max_abs_error": 2.5e-7, "min_cosine": 0.9999999},
                               {"batch_size": 8, "max_abs_error": 3.25e-7, "min_cosine": 0.9999998}]}}}
SOURCE = {"file": "r3d18_ucf101_best.pth", "sha256": "ab" * 32, "format": "tclr-reference", "epoch": 247,
          "state_dict_key": "state_dict"}


def converted_config():
    config = demo_config(architecture="r3d_18", source=dict(SOURCE))
    config.pop("training")
    return config


def all_cards():
    """(name, card text) for every kind of model the project saves."""
    return {
        "demo": render_model_card(demo_config(), DEMO_RESULTS),
        "rgb_no_results": render_model_card(demo_config(preprocessing={**DEMO_PRE, "channel_order": "rgb",
                                                                        "mean": [0.45] * 3, "std": [0.225] * 3})),
        "paper_recipe": render_model_card(demo_config(training={"recipe": "tclr_r3d18_ucf101", "reference": PAPER_ROW,
                                                                "dataset": "ucf101/split1", "epochs": 300}),
                                          {"knn_r1": 0.5, "dataset": "ucf101/split1"}),
        "classifier": render_model_card(classifier_config()),
        "exported": render_model_card(exported_config(), DEMO_RESULTS, export_report=EXPORT_REPORT),
        "converted": render_model_card(converted_config(), model_id="hf-hub:tclr-zoo/tclr-r3d18-ucf101",
                                       conversion_check={"max": 3e-7, "features": 2e-7, "embeddings": 3e-7}),
    }


@pytest.fixture(scope="module")
def cards():
    return all_cards()


def metrics_in_index(card: str) -> list[tuple[str, float]]:
    meta = parse_front_matter(card)
    return [(m["type"], m["value"]) for entry in meta.get("model-index", [{}])[0].get("results", [])
            for m in entry["metrics"]]


def test_template_ships_as_package_data():
    template = resources.files("tclr_zoo") / "MODEL_CARD.md"
    text = template.read_text(encoding="utf-8")
    assert template.is_file() and text.startswith("<!--") and "${front_matter}" in text and "${results}" in text


def test_no_placeholder_is_left_and_front_matter_comes_first(cards):
    for name, card in cards.items():
        assert "${" not in card and "<!--" not in card, name
        assert card.startswith("---\nlibrary_name: tclr_zoo\n"), name
        assert "Computer Vision and Image Understanding" in card and "2101.07974" in card, name


def test_front_matter_parses_and_indexes_only_measured_numbers(cards):
    meta = yaml.safe_load(cards["demo"].split("---\n")[1])
    assert meta["library_name"] == "tclr_zoo" and meta["pipeline_tag"] == "feature-extraction"
    assert "tclr" in meta["tags"] and "datasets" not in meta  # synthetic data is no Hub dataset
    assert metrics_in_index(cards["demo"]) == [("knn_r1", 0.8611)]  # not the random-init baseline
    assert "| kNN retrieval R@1, randomly initialised network (baseline) | synthetic/split1 | 0.4167 |" in cards["demo"]
    # the Hub's own parser reads the model-index
    results = ModelCard(cards["demo"]).data.eval_results
    assert [(r.task_type, r.dataset_type, r.metric_type, r.metric_value) for r in results] == [
        ("feature-extraction", "synthetic", "knn_r1", 0.8611)]


def test_paper_numbers_go_to_the_table_never_to_the_model_index(cards):
    card = cards["paper_recipe"]
    assert metrics_in_index(card) == [("knn_r1", 0.5)]
    assert "| kNN retrieval R@1 | UCF101 | 0.5620 | paper (Dave et al., arXiv 2101.07974) |" in card
    assert "reference code README" in card and parse_front_matter(card)["datasets"] == ["ucf101"]
    assert "model-index" not in parse_front_matter(cards["converted"])  # paper numbers only


def test_bgr_warning_only_for_bgr_models(cards):
    assert "expects BGR frames, not RGB" in cards["demo"] and "channel order: **BGR**" in cards["demo"]
    rgb = cards["rgb_no_results"]
    assert "BGR" not in rgb and "channel order: **RGB**" in rgb and "[0.45, 0.45, 0.45]" in rgb
    assert "No numbers were measured" in rgb and "model-index" not in parse_front_matter(rgb)


def test_export_section(cards):
    card = cards["exported"]
    assert "ONNX opset 18 (dynamo exporter)" in card and "`onnx/model.onnx` (fp32)" in card
    assert "max abs error 3.25e-07, min cosine 0.9999998" in card and "onnx" in parse_front_matter(card)["tags"]
    # no model id known: the card says so instead of naming a Hub repo that may not exist
    assert 'load_model("path/to/this/folder", backend="onnx")' in card and "hf-hub:ORG/REPO" in card
    assert "Not exported" in cards["demo"]


def test_converted_model_card_names_its_source_and_paper_numbers(cards):
    card = cards["converted"]
    assert SOURCE["sha256"] in card and "r3d18_ucf101_best.pth" in card and "epoch 247" in card
    assert "| max abs difference to the reference network (features) |" in card and "converted-reference" in card
    assert "| fine-tuned top-1 accuracy | UCF101 | 82.4 % | paper" in card
    assert 'load_model("hf-hub:tclr-zoo/tclr-r3d18-ucf101")' in card
    assert parse_front_matter(card)["datasets"] == ["ucf101"]


def test_classifier_card(cards):
    card = cards["classifier"]
    meta = parse_front_matter(card)
    assert meta["pipeline_tag"] == "video-classification" and meta["datasets"] == ["ucf101"]
    assert "101 labels" in card and "`finetune` protocol" in card and "model.classify(" in card
    assert "| fine-tuned top-1 accuracy | UCF101 | 0.8240 | paper" in card  # the pretraining recipe's reference
    index = meta["model-index"][0]["results"][0]
    assert index["task"]["type"] == "video-classification" and index["dataset"]["type"] == "ucf101"
    assert [(m["type"], m["value"]) for m in index["metrics"]] == [("accuracy", 0.7), ("top5_accuracy", 0.9)]


def test_card_states_the_values_of_its_config():
    """What the demo card says about the model comes from config.json (through the public
    ``render_model_card``): change a value in the config and the sentence changes with it."""
    card = render_model_card(demo_config(), DEMO_RESULTS)
    for line in ("# TCLR video encoder: r3d_10_025",
                 "saved by tclr_zoo 0.1.0",
                 '`r3d_10_025`: R3D-10 at quarter width (CPU demo); arguments `{"kind": "r3d", "widths": '
                 '[16, 32, 64, 128], "depths": [1, 1, 1, 1]}`',
                 "`retrieval`: 512 values, TCLR's temporal feature (4 time-steps x 128 channels, L2-normalised)",
                 "`backbone`: 128 values", "`projection`: 64 values",
                 "by the tclr-zoo recipe `demo` on `synthetic/split1` for 22 epochs",
                 "- clip: 16 frames, frame stride 2 at inference (pretraining sampled with stride 4)",
                 "- spatial: centre crop of 0.8 of the short side, resized to 32x32",
                 "- network input: float32 `[batch, 3, 16, 32, 32]`",
                 "- mean / std: none (no normalisation)",
                 "averaged over 5 clips of 16 frames (stride 2)",
                 "| kNN retrieval R@1 | synthetic/split1 | 0.8611 | measured by this run |"):
        assert line in card, line
    assert metrics_in_index(card) == [("knn_r1", 0.8611)]
    changed = demo_config(architecture="r3d_18", head_dim=128,
                          embedding_dims={"backbone": 512, "retrieval": 2048, "projection": 128},
                          preprocessing={**DEMO_PRE, "size": 112, "crop_fraction": 0.875, "frames": 8,
                                         "eval_frame_stride": 4,
                                         "eval_protocol": {**DEMO_PRE["eval_protocol"], "clips": 9}},
                          training={"recipe": "demo", "dataset": "synthetic/split1", "epochs": 3})
    card = render_model_card(changed, {**DEMO_RESULTS, "knn_r1": 0.25})
    for line in ("# TCLR video encoder: r3d_18", "`retrieval`: 2048 values", "`backbone`: 512 values",
                 "`projection`: 128 values", "for 3 epochs", "- clip: 8 frames, frame stride 4 at inference",
                 "- spatial: centre crop of 0.875 of the short side, resized to 112x112",
                 "- network input: float32 `[batch, 3, 8, 112, 112]`", "averaged over 9 clips of 8 frames (stride 4)",
                 "| kNN retrieval R@1 | synthetic/split1 | 0.2500 | measured by this run |"):
        assert line in card, line
    assert metrics_in_index(card) == [("knn_r1", 0.25)]


def test_resaved_model_keeps_measured_numbers(tmp_path):
    from tclr_zoo import load_model
    from tclr_zoo.models.registry import create_model, resolve_model_args

    model = create_model("r3d_10_025", head_dim=64)
    config = model_config(model, arch="r3d_10_025", model_args=resolve_model_args("r3d_10_025"),
                              preprocessing=copy.deepcopy(DEMO_PRE), extra={"training": demo_config()["training"]})
    save_pretrained(model, tmp_path / "a", config, card=render_model_card(config, DEMO_RESULTS))
    assert card_results(tmp_path / "a" / "README.md")["knn_r1"] == 0.8611
    load_model(tmp_path / "a").save_pretrained(tmp_path / "b")
    card = (tmp_path / "b" / "README.md").read_text()
    assert metrics_in_index(card) == [("knn_r1", 0.8611)] and "copied from the source card" in card
    assert "local-dir:" not in card  # a local path is no use in a published card


def test_reference_numbers_come_from_the_config_and_a_folder_without_them_shows_none(monkeypatch):
    """The card quotes the paper's numbers the training recorded in config.json; a folder saved before
    they were recorded (its recipe named, no ``reference``) shows none, and no recipe is read for it."""
    import tclr_zoo.train.config

    loaded = []
    monkeypatch.setattr(tclr_zoo.train.config, "load_recipe", lambda *args, **kwargs: loaded.append(args))
    old = render_model_card(demo_config(training={"recipe": "tclr_r3d18_ucf101", "dataset": "ucf101/split1",
                                                  "epochs": 300}))
    assert "| paper (Dave et al." not in old and "reference code README" not in old
    own = render_model_card(demo_config(training={"recipe": "a file that is gone", "dataset": "ucf101/split1",
                                                  "epochs": 3, "reference": {"paper_ucf101_knn_r1": 0.25}}))
    assert "| kNN retrieval R@1 | UCF101 | 0.2500 | paper (Dave et al., arXiv 2101.07974) |" in own
    assert loaded == []


def test_evaluation_records_that_say_pooling_still_read_as_the_head_they_measured():
    """Records written before the protocols took the SDK's head names say ``pooling: temporal``; the
    card, ``info``, eval's table and pretrain's closing line read them as the head they mean."""
    from tclr_zoo.cli.train import _knn_settings
    from tclr_zoo.hub.card_metadata import protocol_text, record_head

    settings = {"clips": 9, "frames": 16, "stride": 2, "size": 112, "crop_fraction": 0.8}
    old = {"protocol": "retrieval", "dataset": "UCF101", "split": 1, "settings": {**settings, "pooling": "temporal"},
           "metrics": {"R@1": 0.5}}
    new = {**old, "settings": {**settings, "head": "retrieval"}}
    assert protocol_text(old) == protocol_text(new) == ("kNN retrieval: test split 1 queries train split 1; 9 clips x "
                                                       "16 frames at stride 2, 112 px, centre crop 0.8; retrieval "
                                                       "head; cosine")
    assert [record_head({"pooling": p}) for p in ("temporal", "pooled", "projection")] == [
        "retrieval", "backbone", "projection"]
    assert "retrieval head; cosine" in render_model_card(demo_config(evaluation=[old]))
    results = {"protocol": "retrieval", "dataset": "UCF101", "split": 1, **old["settings"]}  # an old results.json
    assert _knn_settings(results) == "UCF101, split 1, 9 clips x 16 frames at stride 2, retrieval head"
