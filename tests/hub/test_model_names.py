"""Every command over every kind of model name: the one resolver (``hub.resolve``) behind the SDK and
the CLI, and a model's identity (its content, not its folder).

One tiny model is made once, as a pretraining checkpoint; its export is the saved folder, which is
published on the local Hub server (olah, see hub_server). So the folder, ``local-dir:``, the
checkpoint and ``hf-hub:ORG/REPO@SHA`` name the same model, and every command must give the same
result for each -- and the same one-line error for a name that names no weights. The commands run
in-process (click's CliRunner) to keep the matrix to seconds.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_overrides
from safetensors.torch import save_file

import tclr_zoo
from tclr_zoo import cli
from tclr_zoo.app.service import AppError, SearchService
from tclr_zoo.cli.options import pretrained_weights
from tclr_zoo.data.decode import VideoDecodeError
from tclr_zoo.hub.format import read_weights, save_pretrained
from tclr_zoo.hub.identity import model_identity
from tclr_zoo.hub.resolve import resolve_model
from tclr_zoo.inference.corpus import embed_corpus
from tclr_zoo.inference.shards import ShardError, job_differences, shard_folder
from tclr_zoo.models.preprocessing import Preprocessing
from tclr_zoo.models.registry import ModelNotFoundError
from tclr_zoo.retrieval.index import VideoIndex
from tclr_zoo.train.checkpoint import save_checkpoint
from tclr_zoo.train.config import load_recipe

WEIGHTS = ("folder", "local-dir", "checkpoint", "hf-hub")
UNPUBLISHED = "r3d_18.tclr_ucf101"
ARCH = "r3d_10_025"  # no published weights: a bare name needs --random-init
RETRIEVAL = ["--set", "clips=1", "--set", "ks=[1]", "--set", "workers=0", "--set", "size=32"]


@pytest.fixture(scope="module", autouse=True)
def hub_env(local_hub, tmp_path_factory):
    """A private Hub cache, the local server as the Hub, no token, online."""
    home = tmp_path_factory.mktemp("hf-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        patch.setenv("HF_HUB_CACHE", str(home / "hub"))
        patch.setenv("HF_ENDPOINT", local_hub.endpoint)
        for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "TCLR_ZOO_HUB_ORG"):
            patch.delenv(name, raising=False)
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield


@pytest.fixture(scope="module")
def names(tiny_dataset, local_hub, tmp_path_factory) -> dict[str, str]:
    """The four names of one model: its pretraining checkpoint, the folder exported from it (also as
    local-dir:), and that folder published on the Hub at a pinned commit."""
    root = tmp_path_factory.mktemp("names")
    recipe = load_recipe("demo", tiny_overrides(tiny_dataset))
    torch.manual_seed(0)
    network = tclr_zoo.create_model(recipe.model.arch, head_dim=recipe.model.head_dim)
    checkpoint = root / "run" / "last.pt"
    checkpoint.parent.mkdir()
    save_checkpoint(checkpoint, {"epoch": 0, "model": network.state_dict(), "recipe": recipe.to_dict()})
    model, config, _ = resolve_model(checkpoint)
    folder = save_pretrained(model, root / "model", config)
    repo = f"tclr-test/names-{uuid.uuid4().hex[:8]}"
    sha = local_hub.publish(folder, repo)
    return {"folder": str(folder), "local-dir": f"local-dir:{folder}", "checkpoint": str(checkpoint),
            "hf-hub": f"hf-hub:{repo}@{sha}"}


@pytest.fixture(scope="module")
def finetune_recipe(tiny_dataset, tmp_path_factory) -> Path:
    """A downstream recipe running the retrieval protocol: finetune's way in, at eval's cost."""
    path = tmp_path_factory.mktemp("recipe") / "names.yaml"
    path.write_text(f"name: names\nprotocol: retrieval\nmodel: null\ndata: {{dataset: ucf101, root: {tiny_dataset}}}\n"
                    "settings: {clips: 1, ks: [1], workers: 0, size: 32}\n")
    return path


def invoke(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def command_lines(name: str, flags: list[str], video: Path, out: Path, dataset: Path, recipe: Path) -> dict:
    """Each command that takes a model, over ``name`` (``flags``: --random-init or nothing)."""
    return {
        "info": ["info", name, *flags],
        "export": ["export", name, "--out", out / "export", *flags],
        "eval": ["eval", name, "--protocol", "retrieval", "--dataset", "ucf101", "--root", dataset, "--device", "cpu",
                 "--no-progress", "--out", out / "eval.json", *RETRIEVAL, *flags],
        "finetune": ["finetune", recipe, "--set", f"model={name}", "--device", "cpu", "--no-progress",
                     "--out", out / "finetune.json", *flags],
        "embed": ["embed", name, video, "--out", out / "e.npy", "--workers", "0", "--no-progress", *flags],
        "classify": ["classify", name, video, "--workers", "0", "--no-progress", *flags],
        "index build": ["index", "build", name, video, "--out", out / "index", "--workers", "0", "--no-progress",
                        *flags],
        "index search": ["index", "search", out / "index", video, "--model", name, *flags],
    }


def run_all(name: str, flags: list[str], video: Path, out: Path, dataset: Path, recipe: Path) -> dict:
    out.mkdir(parents=True)
    return {command: invoke(*args) for command, args in command_lines(name, flags, video, out, dataset, recipe).items()}


def test_every_command_takes_every_name_of_one_model_and_gives_the_same_answer(names, video, tiny_dataset,
                                                                               finetune_recipe, tmp_path):
    results = {kind: run_all(names[kind], [], video, tmp_path / kind, tiny_dataset, finetune_recipe)
               for kind in WEIGHTS}
    for kind, by_command in results.items():
        for command, (code, stdout, stderr) in by_command.items():
            if command == "classify":  # a pretrained encoder: the same refusal for every name of it
                assert code == 2 and "has no classifier" in stderr and stderr.count("\n") == 1, (kind, stderr)
            else:
                assert code == 0, (kind, command, stderr)
        assert "architecture:   r3d_10_025" in by_command["info"][1]
    # the same model: the same rows, scores, exported weights and identity, whatever its name
    rows = [np.load(tmp_path / kind / "e.npy") for kind in WEIGHTS]
    assert all(np.array_equal(rows[0], other) for other in rows[1:])
    for result in ("eval.json", "finetune.json"):
        recall = {json.loads((tmp_path / kind / result).read_text())["R@1"] for kind in WEIGHTS}
        assert len(recall) == 1, result
    identities = {tclr_zoo.load_model(names[kind]).identity for kind in WEIGHTS}
    exported = {tclr_zoo.load_model(tmp_path / kind / "export").identity for kind in WEIGHTS}
    manifests = {json.loads((tmp_path / kind / "index" / "manifest.json").read_text())["model_identity"]
                 for kind in WEIGHTS}
    assert len(identities) == 1 and exported == manifests == identities
    # the app takes each name for each index (they all hold this one model's rows)
    for kind in WEIGHTS:
        service = SearchService.open(tmp_path / "folder" / "index", model=names[kind])
        assert service.model.identity in identities


@pytest.mark.parametrize("name, flags", [(UNPUBLISHED, []), (ARCH, [])], ids=["unpublished arch.tag", "bare arch"])
def test_a_name_without_weights_gets_the_same_one_line_error_everywhere(name, flags, names, video, tiny_dataset,
                                                                        finetune_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may be asked of the network
    index = tmp_path / "built"
    VideoIndex.build(tclr_zoo.load_model(names["folder"]), [str(video)], progress=False, workers=0).save(index)
    lines = command_lines(name, flags, video, tmp_path, tiny_dataset, finetune_recipe)
    lines["index search"] = ["index", "search", index, video, "--model", name]
    lines["app"] = ["app", index, "--model", name, "--port", "0"]
    errors = {}
    for command, args in lines.items():
        code, _, stderr = invoke(*args)
        assert code == 2 and stderr.count("\n") == 1, (command, stderr)
        errors[command] = stderr
    assert len(set(errors.values())) == 1, errors  # word for word the same in every command
    line = errors["info"].strip()
    assert line.startswith(f"tclr-zoo: error: {name}") and "pretrained=" not in line and "--random-init" in line
    assert ("not published yet" in line) if "." in name else ("an architecture name" in line)
    with pytest.raises(ModelNotFoundError, match=r"pretrained=False") as sdk:
        tclr_zoo.load_model(name)
    assert sdk.value.reason == line.removeprefix("tclr-zoo: error: ").split("; add --random-init")[0]
    assert not (tmp_path / "export").exists() and not (tmp_path / "e.npy").exists()


def test_random_weights_are_asked_for_explicitly_and_work_everywhere(video, tiny_dataset, finetune_recipe, tmp_path):
    by_command = run_all(ARCH, ["--random-init"], video, tmp_path / "random", tiny_dataset, finetune_recipe)
    for command, (code, stdout, stderr) in by_command.items():
        assert code == (2 if command == "classify" else 0), (command, stderr)
    assert "model:          r3d_10_025 (random init)" in by_command["info"][1]
    # seeded: two runs build the same network, so an index built with it is searched with it
    again = invoke("embed", ARCH, video, "--out", tmp_path / "again.npy", "--workers", "0", "--random-init")
    assert again[0] == 0 and np.array_equal(np.load(tmp_path / "random" / "e.npy"), np.load(tmp_path / "again.npy"))
    service = SearchService.open(tmp_path / "random" / "index", model=ARCH, pretrained=pretrained_weights(True))
    assert service.model.model_id == "r3d_10_025 (random init)"
    code, _, stderr = invoke("info", tmp_path / "random" / "export", "--random-init")  # saved weights: not random
    assert code == 2 and "--random-init builds an architecture with random weights" in stderr


def test_a_moved_or_copied_model_folder_still_matches_its_index(names, video, tmp_path):
    copy = Path(shutil.copytree(names["folder"], tmp_path / "copy"))
    index = tmp_path / "index"
    assert invoke("index", "build", copy, video, "--out", index, "--workers", "0")[0] == 0
    moved = copy.rename(tmp_path / "moved")
    hits = invoke("index", "search", index, video, "--model", moved)
    assert hits[0] == 0 and str(video) in hits[1], hits[2]
    assert SearchService.open(index, model=str(moved)).model.model_id == f"local-dir:{moved.resolve()}"
    # the index's own record points where the folder was: the message says to pass it
    gone = invoke("index", "search", index, video)
    assert gone[0] == 2 and "pass the model that built it with --model" in gone[2] and "model=" not in gone[2]
    # a different model (other weights, same architecture and preprocessing) is refused
    other = tclr_zoo.load_model(moved)
    with torch.no_grad():
        next(other.torch_model.parameters()).add_(0.01)
    different = other.save_pretrained(tmp_path / "different")
    refused = invoke("index", "search", index, video, "--model", different)
    assert refused[0] == 2 and "not comparable" in refused[2]
    with pytest.raises(AppError, match="is not the model this index was built with"):
        SearchService.open(index, model=str(different))


def test_an_index_saved_before_identities_keeps_working_with_the_model_it_names(names, video, tmp_path):
    folder = Path(shutil.copytree(names["folder"], tmp_path / "model"))
    model = tclr_zoo.load_model(folder)
    VideoIndex.build(model, [str(video)], progress=False, workers=0).save(tmp_path / "index")
    manifest = tmp_path / "index" / "manifest.json"
    old = json.loads(manifest.read_text())
    del old["model_identity"]  # as written before identities were recorded
    manifest.write_text(json.dumps(old))
    loaded = VideoIndex.load(tmp_path / "index")
    assert loaded.identity is None
    assert loaded.search(str(video), 1)[0][0].path == str(video)  # the model it names, loaded from its record
    assert loaded.search(str(video), 1, model=model)[0][0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="not comparable"):
        loaded.search(str(video), 1, model=tclr_zoo.load_model(ARCH, pretrained=False))


def test_a_resumed_job_takes_the_moved_model_and_refuses_another(names, video, tmp_path):
    folder = Path(shutil.copytree(names["folder"], tmp_path / "model"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    out = tmp_path / "rows.npy"
    job = {"out": out, "unit_videos": 1, "workers": 0}
    with pytest.raises(VideoDecodeError, match="broken.mp4"):  # stops at the bad video; the first unit is kept
        embed_corpus(str(folder), [str(video), str(broken)], **job)
    assert (shard_folder(out) / "unit-000000.safetensors").is_file()
    with pytest.raises(ShardError, match="differs in model"):
        embed_corpus(ARCH, [str(video), str(broken)], resume=True, pretrained=False, **job)
    moved = folder.rename(tmp_path / "moved")
    log = []
    done = embed_corpus(str(moved), [str(video), str(broken)], resume=True, skip_bad=True, log=log.append, **job)
    assert len(done) == 1 and log and log[0].startswith("resuming: 1 finished units")
    # a job.json of an earlier version names the model only: then the names are what is compared
    before = {"model_id": "local-dir:/a", "revision": "r", "head": "retrieval"}
    assert job_differences(before, {"model": "sha256:x", "model_id": "local-dir:/a", "revision": "r",
                                    "head": "retrieval"}) == []
    assert job_differences(before, {"model": "sha256:x", "model_id": "local-dir:/b", "revision": "r",
                                    "head": "retrieval"}) == ["model_id"]
    assert job_differences({"model": "sha256:x", "model_id": "local-dir:/a"}, {"model": "sha256:x",
                                                                               "model_id": "local-dir:/b"}) == []


def test_identity_is_the_weights_and_preprocessing_not_the_key_names(names, tmp_path):
    folder = Path(names["folder"])
    state = read_weights(folder)
    pre = Preprocessing.from_config(json.loads((folder / "config.json").read_text()))
    identity = tclr_zoo.load_model(folder).identity
    assert model_identity(state, pre) == identity
    # a folder written before the projection head was renamed: head.* keys, the same model
    old = tmp_path / "old"
    old.mkdir()
    config = json.loads((folder / "config.json").read_text())
    del config["weights_sha256"]
    (old / "config.json").write_text(json.dumps(config))
    save_file({k.replace("projection.", "head.", 1) if k.startswith("projection.") else k: v
               for k, v in state.items()}, str(old / "model.safetensors"))
    assert any(k.startswith("head.") for k in read_weights(old))
    assert tclr_zoo.load_model(old).identity == identity
    assert model_identity(read_weights(old), pre) == identity  # the onnx backend's way: from the file
    # other weights, or the same weights fed other input, are another model
    changed = dict(state)
    key = next(k for k, v in state.items() if v.is_floating_point())
    changed[key] = state[key] + 1e-3
    assert model_identity(changed, pre) != identity
    assert model_identity(state, Preprocessing(**{**pre.__dict__, "channel_order": "rgb"})) != identity


def test_timm_habits_work_or_say_the_right_call(names):
    model = tclr_zoo.create_model(ARCH, num_classes=5)
    assert model(torch.rand(2, 3, 16, 32, 32)).shape == (2, 5)  # logits, not features
    assert tclr_zoo.create_model(f"{ARCH}.anything").feature_dim == model.feature_dim  # the tag matters with weights
    loaded = tclr_zoo.create_model(names["hf-hub"], pretrained=True, num_classes=3)
    assert loaded(torch.rand(1, 3, 16, 32, 32)).shape == (1, 3)
    reference = tclr_zoo.load_model(names["folder"]).torch_model
    assert torch.equal(loaded.backbone.state_dict()["stem.0.weight"], reference.backbone.state_dict()["stem.0.weight"])
    assert tclr_zoo.list_models(pretrained=True) == tclr_zoo.list_pretrained() and UNPUBLISHED in tclr_zoo.list_models(
        pretrained=True)
    assert tclr_zoo.list_models("r3d_10*") == [ARCH]
    with pytest.raises(ModelNotFoundError, match="not published yet"):
        tclr_zoo.create_model(UNPUBLISHED, pretrained=True)
    with pytest.raises(ModelNotFoundError, match=r"its weights are named r3d_18\.tclr_k400, r3d_18\.tclr_ucf101"):
        tclr_zoo.create_model("r3d_18", pretrained=True)
    with pytest.raises(TypeError, match="load_model"):
        tclr_zoo.create_model(ARCH, device="cpu")
