"""Recipes: bundled files, the paper recipe's reference settings, overrides and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tclr_zoo.models.preprocessing import Preprocessing
from tclr_zoo.models.pretrained import PAPER_RESULTS, get_pretrained
from tclr_zoo.train.config import (
    RecipeError,
    ResumeRequest,
    bundled_recipes,
    load_recipe,
    preprocessing_config,
    resume_changes,
)
from tclr_zoo.train.schedule import WarmupPlateauSchedule

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_bundled_recipes_load():
    assert {"demo", "tclr_r3d18_ucf101", "tclr_r3d18_k400", "tclr_c3d_ucf101"} <= set(bundled_recipes("pretrain"))
    for name in bundled_recipes("pretrain"):
        assert load_recipe(name).name == name
    downstream = bundled_recipes("downstream")
    assert {"finetune_r3d18_ucf101", "linear_r3d18_hmdb51", "retrieval_r3d18_ucf101"} <= set(downstream)
    with pytest.raises(RecipeError, match="tclr-zoo finetune"):
        load_recipe(downstream[0])


def test_paper_recipe_has_the_reference_settings():
    r = load_recipe("tclr_r3d18_ucf101")
    assert (r.model.arch, r.model.bn_mode, r.model.head_dim) == ("r3d_18", "faithful", 128)
    assert (r.data.frames, r.data.stride, r.data.num_local, r.data.size) == (16, 4, 4, 112)
    assert (r.data.channel_order, r.data.mean, r.data.std) == ("bgr", None, None)
    assert (r.optim.lr, r.optim.weight_decay, r.optim.warmup) == (1e-3, 1e-9, [0.01, 0.05, 0.1, 0.5, 1.0])
    assert (r.optim.plateau_patience, r.optim.plateau_factor) == (9, 0.1)
    assert (r.train.batch_size, r.train.amp, r.train.channels_last, r.train.temperature) == (40, "auto", "auto", 0.1)
    assert r.reference["paper_ucf101_knn_r1"] == 0.562


def test_overrides_parse_yaml_values():
    r = load_recipe("demo", ["train.epochs=3", "optim.warmup=[0.5, 1.0]", "data.mean=null",
                             "train.loss_weights.local_local=0.5", "data.synthetic={num_classes: 3}"])
    assert r.train.epochs == 3 and r.optim.warmup == [0.5, 1.0] and r.data.mean is None
    assert r.train.loss_weights == {"local_local": 0.5} and r.data.synthetic == {"num_classes": 3}


@pytest.mark.parametrize("override, message", [
    ("train.epochz=3", "unknown key 'epochz'"),
    ("trian.epochs=3", "unknown section 'trian'"),
    ("train=3", "is a section"),
    ("epochs", "section.key=value"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("demo", [override])


def test_recipe_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  archh: r3d_18\n")
    with pytest.raises(RecipeError, match="unknown key 'archh'"):
        load_recipe(unknown)


def test_schedule_warms_up_then_divides_on_plateau():
    import torch

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupPlateauSchedule(opt, 1e-3, [0.01, 0.05, 0.1, 0.5, 1.0], patience=2, factor=0.1)
    lrs = []
    for epoch, loss in enumerate([5, 4, 3, 2, 1, 1, 1, 1, 1]):
        schedule.start_epoch(epoch)
        lrs.append(schedule.lr)
        schedule.end_epoch(loss)
    assert lrs[:5] == pytest.approx([1e-5, 5e-5, 1e-4, 5e-4, 1e-3])
    assert lrs[-1] == pytest.approx(1e-4)  # no improvement for more than 2 epochs after warm-up


def test_paper_recipe_preprocessing_is_the_faithful_one():
    """Converted reference checkpoints get the default Preprocessing() (TCLR's); a model trained by the paper
    recipe gets preprocessing_config(recipe): the two must describe the same input."""
    assert preprocessing_config(load_recipe("tclr_r3d18_ucf101")) == Preprocessing()


def test_recipe_reference_names_its_row_of_the_paper_results():
    r = load_recipe("tclr_r3d18_ucf101")
    assert r.reference == PAPER_RESULTS["r3d_18.tclr_ucf101"] and r.reference is not PAPER_RESULTS["r3d_18.tclr_ucf101"]
    assert list(r.reference) == ["paper_ucf101_knn_r1", "repo_readme_ucf101_knn_r1", "paper_ucf101_finetune_top1",
                                 "paper_hmdb51_finetune_top1", "reference_linear_eval_ucf101_top1"]
    assert load_recipe("tclr_r3d18_k400").reference == {"paper_ucf101_finetune_top1": None,
                                                        "paper_hmdb51_finetune_top1": None}
    # the released weights' paper numbers (model card) are the same row, in the same unit
    assert get_pretrained("r3d_18.tclr_ucf101").results == {
        "ucf101_knn_r1": 0.562, "ucf101_finetune_top1": 0.824, "hmdb51_finetune_top1": 0.529}
    with pytest.raises(RecipeError, match="no published results for 'r3d_18.nope'"):
        load_recipe("tclr_r3d18_ucf101", ["reference={published: r3d_18.nope}"])


def test_downstream_recipe_references_match_the_paper_results():
    """Downstream recipes quote single numbers; they must be the ones of PAPER_RESULTS."""
    from tclr_zoo.train.protocols import load_protocol_recipe

    row = PAPER_RESULTS["r3d_18.tclr_ucf101"]
    quoted = {("finetune_r3d18_ucf101", "paper_top1"): row["paper_ucf101_finetune_top1"],
              ("finetune_r3d18_hmdb51", "paper_top1"): row["paper_hmdb51_finetune_top1"],
              ("retrieval_r3d18_ucf101", "paper_R@1"): row["paper_ucf101_knn_r1"],
              ("linear_r3d18_ucf101", "reference_top1"): row["reference_linear_eval_ucf101_top1"]}
    for (name, key), value in quoted.items():
        assert load_protocol_recipe(name, ["model=m", "data.root=d"])["reference"][key] == value, (name, key)
        raw = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())["reference"][key]
        assert raw == {"published": "r3d_18.tclr_ucf101", "result": raw["result"]}, (name, key)  # a pointer, not a copy
    with pytest.raises(RecipeError, match="has no result 'paper_ucf101_nope'"):
        load_protocol_recipe("finetune_r3d18_ucf101", ["model=m", "data.root=d", "reference.paper_top1="
                                                       "{published: r3d_18.tclr_ucf101, result: paper_ucf101_nope}"])


def test_a_resume_request_compares_only_the_keys_it_names_with_the_settings_the_run_ends_with():
    """`--resume [--set ...]`: the recorded recipe (overrides and earlier resumes included) is the
    baseline, so a bare resume changes nothing and a key given again at its current value is no change."""
    recorded = load_recipe("demo", ["train.max_steps_per_epoch=2", "train.epochs=2"])
    recorded.resumes.append({"epoch": 3, "set": {"train.epochs": 4}, "was": {"train.epochs": 2}})

    def changes(*overrides: str) -> dict:
        return resume_changes(recorded, ResumeRequest(overrides).applied_to(recorded, "runs/x"))

    assert changes() == {}
    assert changes("train.epochs=4", "train.max_steps_per_epoch=2") == {}
    assert changes("train.epochs=6", "optim.lr=0.5") == {"train.epochs": (4, 6), "optim.lr": (0.002, 0.5)}
    with pytest.raises(RecipeError, match=r"train.max_steps_per_epoch cannot change .*it was 2, now 1"):
        changes("train.max_steps_per_epoch=1")
    with pytest.raises(RecipeError, match="unknown key 'epochz'"):
        ResumeRequest(("train.epochz=1",))  # refused when asked, before any checkpoint is read
    with pytest.raises(RecipeError, match="holds a run of recipe 'demo', not 'demo_ic_only'"):
        ResumeRequest(recipe_name="demo_ic_only").applied_to(recorded, "runs/x")
