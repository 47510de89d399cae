"""Decoding in worker processes (``workers=``) gives what decoding in the calling process gives:
the same windows and vectors, in input order, and the same errors for bad files; and
``precision="bf16"`` stays within the documented cosine of fp32."""

from __future__ import annotations

import os

import pytest
import torch
from click.testing import CliRunner

import tclr_zoo
from hostile_videos import write_video
from real_videos import real_video
from tclr_zoo.cli.batch import embed_files
from tclr_zoo.data.decode import VideoDecodeError, VideoTooShortError
from tclr_zoo.inference.backends import BackendError
from tclr_zoo.inference.loader import default_workers

ARCH = "r3d_10_025"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tclr_zoo.load_model(ARCH, pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Real H.264 files of different lengths (1, 2 and 3 windows of 31 frames), written with PyAV."""
    folder = tmp_path_factory.mktemp("workers")
    return [str(write_video(folder / f"v{n}.mp4", n)) for n in (24, 40, 70, 33)]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    random = folder / "random.mp4"
    random.write_bytes(os.urandom(4000))
    return {"random": str(random), "missing": str(folder / "missing.mp4")}


def test_workers_give_the_same_vectors_in_input_order(model, videos):
    order = [videos[2], videos[0], videos[3], videos[1], str(real_video("carphone_pristine.mp4"))]
    threads = torch.get_num_threads()
    here = model.embed(order, workers=0, batch_size=3)
    there = model.embed(order, workers=2, batch_size=3)
    assert torch.get_num_threads() == threads  # the forward's threads are restored
    assert there.shape == (5, model.config["embedding_dims"]["retrieval"])
    torch.testing.assert_close(there, here, rtol=0, atol=1e-5)
    assert (here[1:] - here[:-1]).abs().amax() > 1e-3  # distinct rows: an order mix-up would show


def test_embed_windows_and_classify_with_a_worker(model, videos):
    here, there = model.embed_windows(videos[2], workers=0), model.embed_windows(videos[2], workers=1)
    assert len(here.starts) == 3 and here.starts == there.starts and here.ends == there.ends
    torch.testing.assert_close(there.embeddings, here.embeddings, rtol=0, atol=1e-5)
    model.config["labels"] = ["a", "b", "c"]  # the projection head stands in for logits below
    try:
        original = model.backend.run
        model.backend.run = lambda clips, head: original(clips, "backbone")[:, :3]
        assert model.classify(videos, workers=0, top_k=2) == model.classify(videos, workers=2, top_k=2)
    finally:
        del model.config["labels"]
        model.backend.run = original


def test_a_bad_file_in_a_worker_raises_what_the_calling_process_raises(model, videos, bad):
    # The last: worker 1 reports the bad file at 3 while worker 0 still decodes video 0 (one window a
    # chunk); the error of the earlier bad file (2) must win, as in the calling process.
    for order in ([videos[0], bad["random"], videos[1], bad["missing"]], [videos[0], videos[1], bad["missing"]],
                  [videos[2], videos[0], bad["missing"], bad["random"]]):
        raised = []
        for workers in (0, 2):
            with pytest.raises(VideoDecodeError) as info:
                model.embed(order, workers=workers, batch_size=1)
            raised.append((type(info.value), str(info.value), info.value.path, info.value.reason))
        assert raised[0] == raised[1], raised


def test_a_video_failing_after_some_windows_is_left_out_whole(model, videos, monkeypatch):
    from tclr_zoo.inference import loader, model as sdk

    real = sdk.iter_video_windows

    def fails_midway(path, *args, **kwargs):
        for n, window in enumerate(real(path, *args, **kwargs)):
            if path == videos[2] and n == 2:
                raise VideoDecodeError(path, "corrupt or unreadable video data (planted)")
            yield window

    monkeypatch.setattr(sdk, "iter_video_windows", fails_midway)
    monkeypatch.setattr(loader, "iter_video_windows", fails_midway)  # workers are forked: they see it too
    paths = [videos[2], videos[1], videos[3]]
    clean = model.embed(paths[1:], workers=0, head="backbone")
    for workers in (0, 2):
        got = embed_files(model, paths, head="backbone", batch_size=3, skip_bad=True, progress=False, workers=workers)
        assert got.paths == paths[1:] and got.failed == [{"path": videos[2], "reason": "corrupt or unreadable "
                                                                                       "video data (planted)"}]
        torch.testing.assert_close(torch.stack(got.rows), clean, rtol=1e-4, atol=1e-5)


def test_skip_bad_records_each_file_with_the_in_process_reason(model, videos, bad):
    paths = [bad["missing"], videos[1], bad["random"], videos[2]]
    results = [embed_files(model, paths, head="backbone", batch_size=2, skip_bad=True, progress=False, workers=w)
               for w in (0, 2)]
    assert results[0].paths == results[1].paths == [videos[1], videos[2]]
    assert results[0].failed == results[1].failed and [f["path"] for f in results[0].failed] == [
        bad["missing"], bad["random"]]
    assert "file not found" in results[0].failed[0]["reason"]
    torch.testing.assert_close(torch.stack(results[1].rows), torch.stack(results[0].rows), rtol=0, atol=1e-5)


def test_too_short_error_keeps_its_type_across_processes():
    err = VideoTooShortError("/x.mp4", "needs frame 9 but video has 3 frames")
    import pickle

    back = pickle.loads(pickle.dumps(err))
    assert type(back) is VideoTooShortError and str(back) == str(err) and back.reason == err.reason


def test_workers_argument_and_defaults(model, videos, monkeypatch):
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        model.embed(videos, workers=-1)
    cpus = len(os.sched_getaffinity(0))
    assert default_workers("cpu", 1) == 0 and default_workers("cpu", 10) == (min(2, cpus) if cpus > 1 else 0)
    assert default_workers("cuda", 3) == min(3, max(1, cpus - 1))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun with 4 processes on this node: a quarter of the CPUs each
    assert default_workers("cuda", 100) == min(8, max(1, cpus // 4 - 1))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert model._decode_workers(None, videos[:1]) == 0 and model._decode_workers(8, videos) == len(videos)
    frames = torch.zeros(40, 48, 64, 3, dtype=torch.uint8)
    assert model._decode_workers(2, [frames, videos[0]]) == 0  # frames in memory are cut in this process


def test_bf16_stays_within_the_documented_cosine_of_fp32(model):
    path = str(real_video("carphone_pristine.mp4"))
    bf16 = tclr_zoo.load_model(ARCH, pretrained=False, device="cpu", precision="bf16")
    bf16.backend.model.load_state_dict(model.backend.model.state_dict())
    windows_fp32 = model.embed_windows(path).embeddings
    windows_bf16 = bf16.embed_windows(path).embeddings
    cosine = torch.nn.functional.cosine_similarity(windows_fp32, windows_bf16, dim=1)
    assert cosine.min() >= 0.999, cosine
    assert not torch.equal(windows_fp32, windows_bf16)  # bf16 did run
    with pytest.raises(BackendError, match="precision must be fp32 or bf16"):
        tclr_zoo.load_model(ARCH, pretrained=False, device="cpu", precision="fp16")


def test_cli_takes_workers_and_precision(model, videos, bad, tmp_path):
    from tclr_zoo import cli

    saved = model.save_pretrained(tmp_path / "saved")
    out = tmp_path / "e.safetensors"
    result = CliRunner().invoke(cli.main, ["embed", str(saved), videos[0], bad["random"], videos[1], "--out", str(out),
                                           "--workers", "2", "--precision", "fp32", "--skip-bad", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "embedded 2 videos (1 skipped)" in result.output
    refused = CliRunner().invoke(cli.main, ["embed", str(saved), videos[0], "--out", str(tmp_path / "f.npy"),
                                            "--precision", "fp16"])
    assert refused.exit_code == 2 and "precision must be fp32 or bf16" in refused.output
