"""The SDK on real videos: load_model, embed / embed_windows / classify, torch vs onnx backends."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from real_videos import real_video

import tclr_zoo
from tclr_zoo.data.decode import decode_frames, probe
from tclr_zoo.data.windows import WindowPlan, iter_video_windows
from tclr_zoo.export.exporter import export_model
from tclr_zoo.hub.format import ModelLoadError
from tclr_zoo.inference.backends import CPU, CUDA, TENSORRT, BackendError, choose_providers
from tclr_zoo.models.registry import ModelNotFoundError

ARCH = "r3d_10_025"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = tclr_zoo.load_model(ARCH, pretrained=False)
    return model.save_pretrained(tmp_path_factory.mktemp("sdk") / "saved")


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory):
    out = tmp_path_factory.mktemp("sdk-export") / "export"
    export_model(saved, out, onnx=True, max_batch=4, head="retrieval")
    return out


@pytest.fixture(scope="module")
def model(saved):
    return tclr_zoo.load_model(saved)


def test_plain_folder_and_local_dir_prefix_load_the_same_weights(saved, model):
    other = tclr_zoo.load_model(f"local-dir:{saved}")
    assert other.model_id == model.model_id == f"local-dir:{saved.resolve()}"
    assert other.revision == model.revision and len(model.revision) == 16
    for a, b in zip(model.torch_model.state_dict().values(), other.torch_model.state_dict().values()):
        assert torch.equal(a, b)


def test_path_and_decoded_frames_give_the_same_embedding(model):
    path = real_video("carphone_pristine.mp4")
    frames = torch.from_numpy(decode_frames(path, range(probe(path).num_frames), channel_order="rgb"))
    from_path = model.embed(path)
    from_frames = model.embed(frames)
    assert from_path.shape == (1, model.config["embedding_dims"]["retrieval"])
    torch.testing.assert_close(from_path, from_frames, rtol=0, atol=1e-6)
    assert torch.allclose(from_path.norm(dim=1), torch.ones(1))


def test_streamed_windows_equal_windows_decoded_at_once():
    path = real_video("bikes.mp4")
    plan = WindowPlan(frames=8, stride=3, hop=20)
    info = probe(path)
    expected = plan.indices(info.num_frames)
    windows = list(iter_video_windows(path, plan, channel_order="bgr"))
    assert len(windows) == len(expected) > 5
    for window, indices in zip(windows, expected):
        np.testing.assert_array_equal(window.frames.numpy(), decode_frames(path, indices, channel_order="bgr"))
        assert window.start == pytest.approx(indices[0] / info.fps, abs=1e-3)
        assert window.end == pytest.approx((indices[-1] + 1) / info.fps, abs=1e-3)


def test_window_plan_covers_the_video_and_mirrors_short_ones():
    plan = WindowPlan(frames=4, stride=2)  # span 7
    np.testing.assert_array_equal(plan.indices(20)[:, 0], [0, 7, 13])  # last window ends at frame 19
    assert plan.indices(20)[-1, -1] == 19
    short = plan.indices(5)
    assert short.shape == (1, 4) and short.max() < 5


def test_embed_windows_timestamps_and_pooling(model):
    path = real_video("bikes.mp4")
    windows = model.embed_windows(path)
    n = len(model.plan.indices(probe(path).num_frames))
    assert windows.embeddings.shape[0] == len(windows.starts) == len(windows.ends) == n
    assert windows.starts == sorted(windows.starts) and all(e > s for s, e in zip(windows.starts, windows.ends))
    pooled = torch.nn.functional.normalize(windows.embeddings.mean(0), dim=0)
    torch.testing.assert_close(model.embed(path)[0], pooled, rtol=0, atol=1e-6)


def test_batching_across_videos_matches_one_by_one(model):
    paths = [real_video("carphone_pristine.mp4"), real_video("bikes.mp4"), real_video("carphone_pristine.mp4")]
    together = model.embed(paths, batch_size=3, head="backbone")
    alone = torch.cat([model.embed(p, head="backbone", batch_size=1) for p in paths])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_preprocessed_batch_is_embedded_per_clip(model):
    clips = torch.rand(3, 3, 16, 112, 112)
    out = model.embed(clips, head="projection")
    assert out.shape == (3, 128) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 16, 112, 112), r"\[batch, 3, 16, 112, 112\]"),
    (torch.rand(2, 4, 16, 112, 112), r"got float32 shape \(2, 4, 16, 112, 112\)"),
    (torch.rand(2, 3, 8, 112, 112), r"\[batch, 3, 16, 112, 112\]"),
    (torch.full((1, 3, 16, 112, 112), float("nan")), "NaN or Inf"),
    (torch.zeros(16, 112, 112, 3, dtype=torch.int32), r"\[T, H, W, 3\]"),
])
def test_bad_input_names_the_expected_shape(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model.embed(bad)


SHAPE = r"\[batch, 3, 16, 112, 112\]|\[T, H, W, 3\]"
BAD_BATCHES = {  # case: (input, what the refusal must say)
    "rank 4": (torch.rand(3, 16, 112, 112), SHAPE),
    "rank 6": (torch.rand(1, 2, 3, 16, 112, 112), SHAPE),
    "integer dtype": (torch.zeros(1, 3, 16, 112, 112, dtype=torch.int64), SHAPE),
    "4 channels": (torch.rand(1, 4, 16, 112, 112), SHAPE),
    "too few frames": (torch.rand(1, 3, 8, 112, 112), SHAPE),
    "wrong size": (torch.rand(1, 3, 16, 64, 64), SHAPE),
    "NaN": (torch.full((1, 3, 16, 112, 112), float("nan")), "NaN or Inf"),
    "Inf": (torch.full((1, 3, 16, 112, 112), float("inf")), "NaN or Inf"),
    "empty batch": (torch.rand(0, 3, 16, 112, 112), SHAPE),
    "0..255 floats": (torch.rand(1, 3, 16, 112, 112) * 255,
                      r"float values in \[.*\]; this model expects values in \[0, 1\] .*divide by 255"),
    "numpy 0..255 floats": (np.random.default_rng(0).random((1, 3, 16, 112, 112), np.float32) * 255,
                            r"float values in \[.*\]; this model expects values in \[0, 1\] .*divide by 255"),
    "numpy [-1, 1] floats": (np.random.default_rng(1).random((1, 3, 16, 112, 112)) * 2 - 1,
                             r"float values in \[-1, 1\]; this model expects values in \[0, 1\]"),
    "numpy rank 4": (np.zeros((3, 16, 112, 112), np.float32), r"got float32 shape \(3, 16, 112, 112\)"),
    "numpy int32 frames": (np.zeros((16, 112, 112, 3), np.int32), r"got int32 shape \(16, 112, 112, 3\)"),
}


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_both_backends_validate_before_running(saved, exported, backend, case):
    """Each bad batch (tensor or numpy array) is refused with the SDK's input error naming the expected
    [batch, 3, T, H, W], what was given, or the value range -- by our check, not by onnxruntime
    (whose errors name neither)."""
    model = tclr_zoo.load_model(saved) if backend == "torch" else tclr_zoo.load_model(exported, backend="onnx")
    given, expected = BAD_BATCHES[case]
    with pytest.raises(BackendError, match=expected):
        model.embed(given)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_numpy_clips_and_frames_give_what_tensors_give_on_both_backends(saved, exported, backend):
    model = tclr_zoo.load_model(saved) if backend == "torch" else tclr_zoo.load_model(exported, backend="onnx")
    clips = np.random.default_rng(2).random((2, 3, 16, 112, 112), np.float32)
    torch.testing.assert_close(model.embed(clips), model.embed(torch.from_numpy(clips)), rtol=0, atol=0)
    frames = np.random.default_rng(3).integers(0, 256, (20, 48, 64, 3), dtype=np.uint8)
    torch.testing.assert_close(model.embed(frames), model.embed(torch.from_numpy(frames)), rtol=0, atol=0)


def test_onnx_backend_matches_torch_on_a_real_video(saved, exported):
    torch_model = tclr_zoo.load_model(saved)
    onnx_model = tclr_zoo.load_model(exported, backend="onnx")
    assert onnx_model.providers == [CPU] and onnx_model.backend.name == "onnx"
    path = real_video("bikes.mp4")
    a, b = torch_model.embed(path), onnx_model.embed(path)
    assert (a - b).abs().max() < 1e-4
    with pytest.raises(ValueError, match=r"\[batch, 3, 16, 112, 112\]"):
        onnx_model.embed(torch.rand(1, 3, 16, 64, 64))
    with pytest.raises(BackendError, match="--head backbone"):
        onnx_model.embed(path, head="backbone")


def test_onnx_backend_needs_an_exported_graph(saved):
    with pytest.raises(BackendError, match="--onnx"):
        tclr_zoo.load_model(saved, backend="onnx")


def test_provider_order_and_gpu_gating():
    everything = [TENSORRT, CUDA, CPU]
    assert choose_providers(everything, device=None, gpu=True) == [TENSORRT, CUDA, CPU]
    assert choose_providers(everything, device=None, gpu=False) == [CPU]
    assert choose_providers([CUDA, CPU], device="auto", gpu=True) == [CUDA, CPU]
    assert choose_providers(everything, device="cpu", gpu=True) == [CPU]
    with pytest.raises(BackendError, match="no CUDA GPU"):
        choose_providers(everything, device="cuda", gpu=False)
    with pytest.raises(BackendError, match="no GPU provider"):
        choose_providers([CPU], device="cuda", gpu=True)


@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="needs onnxruntime-gpu's CUDA provider library")
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: CUDA would not fall back")
def test_silent_onnxruntime_fallback_is_reported(exported):
    """onnxruntime-gpu without a GPU: asking for CUDA starts the CPU provider instead -- we say so."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = tclr_zoo.load_model(exported, backend="onnx", providers=[CUDA, CPU])
    assert model.providers == [CPU]
    assert any("not the requested CUDAExecutionProvider" in str(w.message) for w in caught)


def test_classify_returns_labels_with_probabilities(tmp_path):
    torch.manual_seed(1)
    net = tclr_zoo.create_model(ARCH, num_classes=3)
    from tclr_zoo.hub.format import model_config, save_pretrained
    from tclr_zoo.models.preprocessing import Preprocessing
    from tclr_zoo.models.registry import resolve_model_args

    config = model_config(net, arch=ARCH, model_args=resolve_model_args(ARCH),
                          preprocessing=Preprocessing(), labels=["jump", "run", "swim"])
    save_pretrained(net, tmp_path / "clf", config)
    model = tclr_zoo.load_model(tmp_path / "clf")
    result = model.classify([real_video("carphone_pristine.mp4"), real_video("bikes.mp4")], top_k=2)
    assert len(result) == 2 and all(len(r) == 2 for r in result)
    for top in result:
        assert {label for label, _ in top} <= {"jump", "run", "swim"}
        assert top[0][1] >= top[1][1] > 0 and sum(p for _, p in top) <= 1 + 1e-6
    with pytest.raises(BackendError, match="no classifier"):
        tclr_zoo.load_model(ARCH, pretrained=False).classify(torch.rand(1, 3, 16, 112, 112))


@pytest.mark.parametrize("name, message", [
    ("some/folder", "some/folder: no such folder .*; for the Hub repository some/folder write hf-hub:some/folder"),
    ("./missing", r"./missing: no such folder \(nor is there|./missing: no such folder\. A model is"),
    ("r3d_99", "unknown architecture"),
    ("local-dir:/no/such/dir", "no such folder"),
    ("hf-hub:just-a-name", "hf-hub:ORG/REPO"),
])
def test_names_that_cannot_be_resolved(name, message):
    with pytest.raises(ModelNotFoundError, match=message):
        tclr_zoo.load_model(name)


def test_architecture_without_published_weights_says_how_to_get_random_ones():
    with pytest.raises(ModelNotFoundError, match=r"pretrained=False"):
        tclr_zoo.load_model("c3d_025")


def test_strict_loading_lists_missing_keys(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads((saved / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config))
    state = load_file(str(saved / "model.safetensors"))
    state.pop("projection.fc1.weight")
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="sha256 differs"):  # the recorded hash catches it first
        tclr_zoo.load_model(broken)
    del config["weights_sha256"]  # a config without a recorded hash: the strict key check catches it
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="projection.fc1.weight"):
        tclr_zoo.load_model(broken)


def test_swapped_weights_are_refused_by_their_recorded_sha256(saved, tmp_path):
    other = tclr_zoo.load_model(ARCH, pretrained=False).save_pretrained(tmp_path / "other")
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / "config.json").write_text((saved / "config.json").read_text())
    (swapped / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="sha256"):
        tclr_zoo.load_model(swapped)
