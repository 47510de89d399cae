"""The reference-checkpoint converter: safe loading, key mapping, numerical round trip, refusals."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import pickle

import pytest
import reference_net
import torch

from tclr_zoo.constants import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from tclr_zoo.hub import convert
from tclr_zoo.hub.convert import ConversionError, convert_reference_checkpoint, load_reference_checkpoint
from tclr_zoo.hub.format import load_pretrained_dir
from tclr_zoo.models import TCLRModel, TCLRVideoResNet
from tclr_zoo.models.preprocessing import Preprocessing

ARCHS = ("r3d_18", "r2plus1d_18")


@pytest.fixture(scope="module")
def nets():
    return {arch: reference_net.build(arch, seed=i) for i, arch in enumerate(ARCHS)}


@pytest.fixture(scope="module")
def checkpoints(nets, tmp_path_factory):
    """Released-style files: DataParallel keys, torch 1.9 pickle names, best_score (a numpy float64)."""
    folder = tmp_path_factory.mktemp("reference")
    return {arch: reference_net.save_checkpoint(folder / f"{arch}_best.pth", net, torch19_names=True, best_score=True)
            for arch, net in nets.items()}


def _listing(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_reproduces_reference_network(arch, nets, checkpoints, tmp_path):
    src, out = checkpoints[arch], tmp_path / "converted"
    report = convert_reference_checkpoint(src, out, arch=arch)
    assert report["checked"] and report["max_abs_error"] <= 1e-5
    assert report["dropped_keys"] == [] and report["source"]["epoch"] == 247

    model, config = load_pretrained_dir(out)
    clips = torch.rand(1, 3, 16, 112, 112, generator=torch.Generator().manual_seed(7))
    ref_feats, ref_z = reference_net.outputs(nets[arch], clips)
    with torch.no_grad():
        feats = model.temporal_features(clips)
        z = model.projection(feats.mean(dim=2))
    assert feats.shape == ref_feats.shape == (1, 512, 4)
    errors = {"features": (feats - ref_feats).abs().max().item(), "embedding": (z - ref_z).abs().max().item()}
    print(f"{arch}: converter check {report['max_abs_error']:.3g}, round trip {errors}")
    assert max(errors.values()) <= 1e-5

    source = config["source"]
    assert source["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert source["file"] == src.name and source["format"] == "tclr-reference"
    pre = config["preprocessing"]
    assert pre == Preprocessing().to_config()
    assert (pre["channel_order"], pre["value_range"], pre["mean"], pre["std"]) == ("bgr", [0.0, 1.0], None, None)
    assert (pre["size"], pre["frames"], pre["eval_frame_stride"], pre["crop_fraction"]) == (112, 16, 2, 0.8)
    assert config["architecture"] == arch and config["embedding_dims"]["retrieval"] == 2048
    assert source["sha256"] in (out / CARD_NAME).read_text()
    assert _listing(tmp_path) == ["converted", *(f"converted/{n}" for n in sorted(os.listdir(out)))]


@pytest.mark.parametrize("key, data_parallel", [("state_dict", False), ("bb_state_dict", True)])
def test_key_layouts(key, data_parallel, nets, tmp_path):
    net = nets["r3d_18"]
    src = reference_net.save_checkpoint(tmp_path / "ckpt.pth", net, key=key, data_parallel=data_parallel)
    report = convert_reference_checkpoint(src, tmp_path / "out", arch="r3d_18", check=False)
    assert report["max_abs_error"] is None and report["source"]["state_dict_key"] == key
    model, _ = load_pretrained_dir(tmp_path / "out")
    ours = model.state_dict()
    for name, value in net.state_dict().items():
        mapped = ("backbone." if name.startswith("0.") else "projection.") + name[2:]
        assert torch.equal(ours[mapped], value), name


def test_loader_needs_and_uses_the_allow_list(tmp_path):
    """A file with everything the reference pickles: plain weights_only loading refuses it, ours reads it."""
    state = {"0.stem.0.weight": torch.randn(4, 3, 3, 7, 7), "1.fc1.bias": torch.randn(4)}
    src = reference_net.save_checkpoint(tmp_path / "model_temp.pth", state, optimizer_step=True, best_score=True,
                                        torch19_names=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(src, weights_only=True)
    loaded = load_reference_checkpoint(src)
    assert sorted(loaded) == ["module.0.stem.0.weight", "module.1.fc1.bias"]
    assert all(torch.equal(loaded["module." + k], v) for k, v in state.items())


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("how", ["os.system", "builtins.open", "builtins.exec", "raw pickle"])
def test_malicious_pickle_is_refused_without_running(how, tmp_path):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.open": _Payload(builtins.open, str(marker), "w"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "raw pickle": _Payload(os.system, f"touch {marker}"),
    }[how]
    src = tmp_path / "evil.pth"
    if how == "raw pickle":
        src.write_bytes(pickle.dumps({"state_dict": {}, "amp_scaler": payload}, protocol=2))
    else:
        torch.save({"epoch": 1, "state_dict": {}, "amp_scaler": payload}, src)
    for call in (lambda: load_reference_checkpoint(src),
                 lambda: convert_reference_checkpoint(src, tmp_path / "out", arch="r3d_18")):
        with pytest.raises(ConversionError) as err:
            call()
        assert str(src) in str(err.value) and "refused" in str(err.value)
        assert getattr(payload.func, "__name__") in str(err.value)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_garbage_and_wrong_contents_are_refused(tmp_path):
    cases = {"random.pth": os.urandom(4096), "empty.pth": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    torch.save({"weights": {}}, tmp_path / "nodict.pth")
    torch.save({"state_dict": {"0.a": 1.0}}, tmp_path / "notensor.pth")
    for name in ("random.pth", "empty.pth", "list.pth", "nodict.pth", "notensor.pth", "missing.pth"):
        with pytest.raises(ConversionError, match=str(tmp_path / name)):
            load_reference_checkpoint(tmp_path / name)


def test_missing_key_is_listed_and_nothing_written(nets, tmp_path):
    state = nets["r3d_18"].state_dict()
    del state["0.layer2.0.conv1.0.weight"]
    src = reference_net.save_checkpoint(tmp_path / "ckpt.pth", state)
    with pytest.raises(ConversionError, match=r"missing keys \['0\.layer2\.0\.conv1\.0\.weight'\]"):
        convert_reference_checkpoint(src, tmp_path / "out", arch="r3d_18", check=False)
    assert _listing(tmp_path) == ["ckpt.pth"]


def test_wrong_arch_is_named(checkpoints, tmp_path):
    with pytest.raises(ConversionError, match="looks like an r2plus1d_18 checkpoint"):
        convert_reference_checkpoint(checkpoints["r2plus1d_18"], tmp_path / "out", arch="r3d_18")
    with pytest.raises(ConversionError, match="r3d_18, r2plus1d_18"):
        convert_reference_checkpoint(checkpoints["r3d_18"], tmp_path / "out", arch="c3d")
    assert not (tmp_path / "out").exists()


def test_out_dir_is_protected_and_writes_are_atomic(checkpoints, tmp_path, monkeypatch):
    src, out = checkpoints["r3d_18"], tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):  # atomic.OutputExistsError, as every writer
        convert_reference_checkpoint(src, out, arch="r3d_18", check=False)
    assert _listing(tmp_path) == ["out", "out/keep.txt"] and (out / "keep.txt").read_text() == "mine"

    # A failed check leaves nothing: no output, no staging folder, no parents created for it.
    monkeypatch.setattr(convert, "verify_against_reference", lambda *a, **k: {"features": 1.0, "embeddings": 0.0,
                                                                              "max": 1.0})
    with pytest.raises(ConversionError, match="differs from the reference"):
        convert_reference_checkpoint(src, tmp_path / "new" / "model", arch="r3d_18")
    with pytest.raises(ConversionError, match="differs from the reference"):
        convert_reference_checkpoint(src, out, arch="r3d_18", overwrite=True)
    assert _listing(tmp_path) == ["out", "out/keep.txt"]
    monkeypatch.undo()

    convert_reference_checkpoint(src, out, arch="r3d_18", overwrite=True, check=False)
    assert sorted(os.listdir(out)) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    assert os.listdir(tmp_path) == ["out"]
    assert json.loads((out / CONFIG_NAME).read_text())["source"]["file"] == src.name


def test_layer4_change_is_required():
    plain = TCLRModel(TCLRVideoResNet(widths=(4, 8, 16, 32), depths=(1, 1, 1, 1), tclr_layer4=False), head_dim=8)
    with pytest.raises(ConversionError, match="layer4"):
        convert.check_tclr_layer4(plain)
    convert.check_tclr_layer4(TCLRModel(TCLRVideoResNet(widths=(4, 8, 16, 32), depths=(1, 1, 1, 1)), head_dim=8))
