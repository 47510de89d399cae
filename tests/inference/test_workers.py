"""Decoding in worker processes (``workers=``) gives what decoding in the calling process gives:
the same windows and vectors, in input order, and the same errors for bad files; the window reorder
buffer puts out-of-order windows back in input order, errors at their place; and
``precision="bf16"`` stays within the documented cosine of fp32."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hostile_videos import write_video
from real_videos import real_video

import tclr_zoo
from tclr_zoo.data.decode import VideoDecodeError, VideoTooShortError
from tclr_zoo.inference.backends import BackendError
from tclr_zoo.inference.corpus import embed_corpus
from tclr_zoo.inference.loader import ReorderBuffer, Skipped, WindowChunk, default_workers

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
    from tclr_zoo.inference import loader
    from tclr_zoo.inference import model as sdk

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
        got = embed_corpus(model, paths, head="backbone", batch_size=3, skip_bad=True, progress=False, workers=workers)
        assert got.paths == paths[1:] and got.skipped == [Skipped(videos[2], "corrupt or unreadable "
                                                                             "video data (planted)")]
        torch.testing.assert_close(got.embeddings, clean, rtol=1e-4, atol=1e-5)


def test_skip_bad_records_each_file_with_the_in_process_reason(model, videos, bad):
    paths = [bad["missing"], videos[1], bad["random"], videos[2]]
    results = [embed_corpus(model, paths, head="backbone", batch_size=2, skip_bad=True, progress=False, workers=w)
               for w in (0, 2)]
    assert results[0].paths == results[1].paths == [videos[1], videos[2]]
    assert results[0].skipped == results[1].skipped and [f.path for f in results[0].skipped] == [
        bad["missing"], bad["random"]]
    assert "file not found" in results[0].skipped[0].reason
    torch.testing.assert_close(results[1].embeddings, results[0].embeddings, rtol=0, atol=1e-5)


def _chunk(video: int, values: tuple[int, ...] = (), *, finished: bool = False, error=None) -> WindowChunk:
    """Windows of one pixel whose value names them (window 1 of video 2: 21); a window starts at its value."""
    frames = torch.tensor(values, dtype=torch.uint8).reshape(-1, 1, 1, 1, 1) if values else None
    return WindowChunk(video, frames, [float(v) for v in values], [v + 0.5 for v in values], finished, error)


def _reorder(chunks: list[WindowChunk], videos: int, batch_size: int, *, skip_bad: bool):
    """Feed ``chunks`` to a ReorderBuffer whose forward returns each window's value; returns what came
    out after each chunk (and after ``finish``), as (position, values, starts) or Skipped, and the batches."""
    batches = []

    def forward(frames: list[torch.Tensor]) -> torch.Tensor:
        batches.append([int(f.sum()) for f in frames])
        return torch.stack([f.float().sum().reshape(1) for f in frames])

    order = ReorderBuffer(videos, batch_size=batch_size, forward=forward, skip_bad=skip_bad)
    out = []

    def drain():
        out.append([item if isinstance(item, Skipped) else
                    (item[0], item[2][:, 0].tolist(), [w.start for w in item[1]]) for item in order.ready()])

    for chunk in chunks:
        order.add(chunk)
        drain()
    order.finish()
    drain()
    return out, batches


def test_reorder_buffer_gives_out_of_order_windows_back_in_input_order():
    # Video 1 is finished first and video 2 next, but nothing can come out before video 0 is: then all three,
    # in input order, each with its windows in order -- while every batch was filled as windows arrived.
    chunks = [_chunk(1, (10,)), _chunk(0, (0,)), _chunk(1, (11,), finished=True), _chunk(2, (20, 21), finished=True),
              _chunk(0, (1,), finished=True)]
    out, batches = _reorder(chunks, 3, batch_size=2, skip_bad=False)
    assert batches == [[10, 0], [11, 20], [21, 1]]
    assert out == [[], [], [], [], [(0, [0.0, 1.0], [0.0, 1.0]), (1, [10.0, 11.0], [10.0, 11.0]),
                                    (2, [20.0, 21.0], [20.0, 21.0])], []]


def test_reorder_buffer_puts_a_failed_video_at_its_place():
    # Video 1 fails after sending a window (still waiting in the batch): it is left out whole -- its window
    # never runs -- and comes out between videos 0 and 2 as a Skipped record, once the last, part-filled
    # batch has run.
    bad = VideoDecodeError("/v1.mp4", "corrupt or unreadable video data")
    chunks = [_chunk(1, (10,)), _chunk(2, (20,), finished=True), _chunk(1, finished=True, error=bad),
              _chunk(0, (0,), finished=True)]
    out, batches = _reorder(chunks, 3, batch_size=3, skip_bad=True)
    assert batches == [[20, 0]]
    assert out == [[], [], [], [], [(0, [0.0], [0.0]), Skipped("/v1.mp4", "corrupt or unreadable video data"),
                                    (2, [20.0], [20.0])]]


def test_reorder_buffer_raises_the_first_bad_video_after_the_ones_before_it():
    # Video 2's error arrives first, video 1's later: video 1's is raised (the first in input order), and
    # only once video 0 -- whose windows wait in a part-filled batch -- has come out.
    first, second = VideoDecodeError("/v1.mp4", "first"), VideoDecodeError("/v2.mp4", "second")
    order = ReorderBuffer(3, batch_size=4, forward=lambda frames: torch.stack([f.float().sum().reshape(1)
                                                                            for f in frames]), skip_bad=False)
    for chunk in (_chunk(0, (0,)), _chunk(2, finished=True, error=second), _chunk(1, (10,))):
        order.add(chunk)
        assert list(order.ready()) == []
    order.add(_chunk(1, finished=True, error=first))
    assert list(order.ready()) == []  # video 0 is not finished: nothing is due yet
    order.add(_chunk(0, (1,), finished=True))
    came, ready = [], order.ready()
    with pytest.raises(VideoDecodeError) as raised:
        for item in ready:
            came.append((item[0], item[2][:, 0].tolist()))
    assert raised.value is first and came == [(0, [0.0, 1.0])]


def test_skipped_reads_every_record_form_and_unpacks_as_a_pair():
    skipped = Skipped("/a.mp4", "no video stream")
    assert Skipped.of({"path": "/a.mp4", "reason": "no video stream"}) == skipped == Skipped.of(["/a.mp4",
                                                                                                "no video stream"])
    assert Skipped.of(skipped) is skipped and skipped.to_record() == {"path": "/a.mp4", "reason": "no video stream"}
    path, reason = skipped
    assert (path, reason) == ("/a.mp4", "no video stream")
    with pytest.raises(AttributeError):
        skipped.path = "/b.mp4"  # frozen


WORKER = """\
import os, sys, time
from tclr_zoo.inference.loader import _die_with_parent

parent = os.getpid()
if os.fork() == 0:  # the worker: asks to end with its parent, as _worker_init does
    _die_with_parent(parent)
    print(os.getpid(), flush=True)
    time.sleep(120)
    os._exit(0)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_decode_worker_ends_when_its_parent_is_killed():
    # A worker left behind by a SIGKILLed run would hold its stdout pipe and the output's writer lock.
    parent = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    worker = Path(f"/proc/{int(parent.stdout.readline())}")
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived its parent"
        time.sleep(0.05)
    parent.stdout.close()


def _alive(process: Path) -> bool:
    """A /proc/PID entry that is neither gone (reaped) nor a zombie."""
    try:
        return "\nState:\tZ" not in process.joinpath("status").read_text()
    except FileNotFoundError:
        return False


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
