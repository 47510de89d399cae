"""INT8 export: calibration clips prepared as the SDK prepares them, the two QDQ graphs, the
accuracy gate on held-out clips, the TensorRT QDQ rules, the CLI and the deployment recipes.

Real parts throughout: the demo-recipe model of conftest's tiny run (r3d_10_025, BGR, 32 px), the tiny
synthetic set (real H.264) as calibration source, onnxruntime for both graphs, the CLI in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import warm_python
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper
from onnx_graphs import qdq_model

import tclr_zoo
from tclr_zoo import cli
from tclr_zoo.cli.errors import SKIP_BAD_HINT
from tclr_zoo.data.decode import VideoDecodeError, decode_frames
from tclr_zoo.data.layouts import load_split
from tclr_zoo.data.synthetic.render import SyntheticConfig, render_video
from tclr_zoo.data.synthetic.write import _write_mp4
from tclr_zoo.export import quantize
from tclr_zoo.export.accuracy import AccuracyGateError, check_int8_accuracy
from tclr_zoo.export.calibration import CalibrationSourceError, calibration_sets, spread_windows, video_clips
from tclr_zoo.export.graph_checks import QDQ_RULES, RULES, GraphCheckError, check_graph
from tclr_zoo.export.int8_options import CALIBRATION_METHODS, HELD_OUT_REMEDY, HELD_OUT_RULE, MIN_AGREEMENT, TIE_COSINE
from tclr_zoo.export.triton import TritonError, write_model_repository

ROOT = Path(__file__).resolve().parents[2]
CALIB, HELD = 8, 24  # the tiny set: 12 train videos, 6 test videos of 40 frames
MAX_BATCH = 4


@pytest.fixture(scope="module")
def demo(tiny_run) -> Path:
    return tiny_run / "model"


@pytest.fixture(scope="module")
def sdk(demo):
    return tclr_zoo.load_model(demo)


@pytest.fixture(scope="module")
def exported(demo, tiny_dataset, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``tclr-zoo export --int8`` in a subprocess: calibrated on the train list, gated on the test list."""
    out = tmp_path_factory.mktemp("int8") / "export"
    done = _cli("export", demo, "--out", out, "--int8", "--calibrate", tiny_dataset, "--dataset", "ucf101",
                "--calib-clips", CALIB, "--holdout-clips", HELD, "--max-batch", MAX_BATCH)
    assert done.returncode == 0, done.stderr
    return out, done


def _cli(*args) -> subprocess.CompletedProcess:
    return warm_python.run_cli(args, timeout=300)


# ---------------------------------------------------------------- the export that passes


def test_int8_export_writes_both_graphs_and_the_gate_figures(exported):
    out, done = exported
    config = json.loads((out / "config.json").read_text())
    assert config["export"]["onnx"]["int8"] == "onnx/model.int8.onnx"
    assert config["export"]["onnx"]["int8_trt"] == "onnx/model.int8.trt.onnx"
    assert config["export"]["int8"]["calibration_method"] == "percentile"  # the default
    report = json.loads((out / "onnx" / "export_report.json").read_text())
    int8 = report["int8"]
    assert int8["calibration"]["clips"] == CALIB and int8["input_range"] == [0.0, 1.0]
    assert "train" in int8["calibration"]["source"] and "test" in int8["gate"]["held_out"]["source"]
    assert int8["gate"]["held_out"] == {**int8["gate"]["held_out"], "clips": HELD, "videos": 6, "skipped": []}
    assert int8["gate"]["passed"] and set(int8["gate"]["graphs"]) == {"model.int8.onnx", "model.int8.trt.onnx"}
    assert int8["gate"]["bounds"] == {"cosine_mean": 0.99, "agreement": MIN_AGREEMENT}
    for figures in int8["gate"]["graphs"].values():  # the default bounds
        assert figures["cosine_mean"] >= 0.99 and figures["agreement"] >= MIN_AGREEMENT and figures["passed"]
        assert figures["cosine_min"] <= figures["cosine_mean"] <= 1.0 + 1e-9
        assert figures["judged"] == HELD and figures["tie"] == TIE_COSINE and figures["tie_units"] == "fp32 cosine"
    assert report["graphs"]["model.int8.onnx"]["checks_passed"] == list(RULES + QDQ_RULES["onnxruntime"])
    assert report["graphs"]["model.int8.trt.onnx"]["checks_passed"] == list(RULES + QDQ_RULES["tensorrt"])
    quantized = report["graphs"]["model.int8.trt.onnx"]["quantized"]
    assert quantized["compute_ops"] == quantized["quantized_compute_ops"] > 0
    assert report["parity_inputs"].startswith("sample_inputs")  # the held-out real clips, not noise
    assert "int8: percentile calibration on 8 clips; gate passed on 24 held-out clips of 6 videos" in done.stdout
    assert report["files"]["model.int8.onnx"]["bytes"] < 0.5 * report["files"]["model.onnx"]["bytes"]


def test_the_input_is_quantized_over_the_preprocessing_range(exported):
    """Known answers: pixels in [0, 1] -> uint8 scale 1/255 with zero point 0; symmetric int8 scale 1/127."""
    out, _ = exported
    for name, scale, zero, dtype in (("model.int8.onnx", 1 / 255, 0, TensorProto.UINT8),
                                     ("model.int8.trt.onnx", 1 / 127, 0, TensorProto.INT8)):
        graph = onnx.load(str(out / "onnx" / name)).graph
        q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "video")
        inits = {t.name: t for t in graph.initializer}
        assert float(numpy_helper.to_array(inits[q.input[1]])) == pytest.approx(scale, rel=1e-6)
        assert inits[q.input[2]].data_type == dtype and int(numpy_helper.to_array(inits[q.input[2]])) == zero


def test_the_gate_figures_match_an_independent_recomputation(exported, sdk, tiny_dataset):
    """The onnxruntime int8 graph loads in a plain InferenceSession; cosine, regret and judged agreement
    recomputed here, one clip at a time, from both graphs' outputs on the same held-out clips agree with
    the report."""
    out, _ = exported
    _, held = calibration_sets(sdk, tiny_dataset, calib_clips=CALIB, holdout_clips=HELD, dataset="ucf101")
    outputs = {}
    for name in ("model.onnx", "model.int8.onnx"):
        session = ort.InferenceSession(str(out / "onnx" / name), providers=["CPUExecutionProvider"])
        outputs[name] = np.concatenate([session.run(["retrieval"], {"video": held.clips[i:i + MAX_BATCH]})[0]
                                        for i in range(0, len(held), MAX_BATCH)]).astype(np.float64)
    fp32, int8 = outputs["model.onnx"], outputs["model.int8.onnx"]
    cosines = np.einsum("nd,nd->n", fp32, int8) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    regrets, judged = [], []
    for i in range(len(held)):  # each clip against the mean (normalised) embedding of every other video
        scores = []
        for e in (fp32, int8):
            unit = e / np.linalg.norm(e, axis=1, keepdims=True)
            scores.append({})
            for v in set(held.videos.tolist()) - {held.videos[i]}:
                mean = unit[held.videos == v].mean(axis=0)
                scores[-1][v] = unit[i] @ mean / np.linalg.norm(mean)
        fp32_scores, int8_answer = scores[0], max(scores[1], key=scores[1].get)
        regrets.append(max(fp32_scores.values()) - fp32_scores[int8_answer])
        judged.append(max(fp32_scores.values()) - min(fp32_scores.values()) > TIE_COSINE)
    figures = json.loads((out / "onnx" / "export_report.json").read_text())["int8"]["gate"]["graphs"]["model.int8.onnx"]
    assert cosines.mean() >= 0.99 and figures["cosine_mean"] == pytest.approx(cosines.mean(), abs=1e-9)
    assert figures["cosine_min"] == pytest.approx(cosines.min(), abs=1e-9)
    assert figures["judged"] == sum(judged) > 0
    assert figures["agreement"] == pytest.approx(np.mean(np.array(regrets)[judged] <= TIE_COSINE), abs=1e-12)
    assert figures["regret_mean"] == pytest.approx(np.mean(regrets), abs=1e-9)
    assert figures["regret_max"] == pytest.approx(np.max(regrets), abs=1e-9)


# ---------------------------------------------------------------- the gate can fail


def test_a_single_black_calibration_clip_fails_the_gate_via_the_cli(demo, sdk, tiny_dataset, tmp_path):
    """Calibrated on one black clip, every activation range is the biases' alone: the real held-out clips
    saturate. The CLI exits 1 naming the figures, and writes nothing."""
    test_videos = [str(item.path) for item in load_split("ucf101", tiny_dataset, subset="test").items]
    held = video_clips(sdk, test_videos, 12, "test")
    clips = np.concatenate([np.zeros((1, *held.clips.shape[1:]), np.float32), held.clips])
    source = tmp_path / "clips.npy"
    np.save(source, clips)
    out = tmp_path / "export"
    done = _cli("export", demo, "--out", out, "--int8", "--calibrate", source, "--calib-clips", 1,
                "--max-batch", 2)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "int8 accuracy gate failed on 12 held-out clips" in lines[0], done.stderr
    assert "model.int8.onnx: cosine mean 0." in lines[0] and "bound >= 0.99" in lines[0]
    assert "nothing written" in lines[0]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["clips.npy"]


def _forced_wrong_scale(int8_graph: Path, tmp_path: Path) -> Path:
    """The int8 graph with its first inner activation scale 20x too small: that layer saturates 20x early."""
    model = onnx.load(str(int8_graph))
    inner = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] != "video")
    layer = next(t for t in model.graph.initializer if t.name == inner.input[1])  # shared by its Q and DQ
    layer.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(layer) / 20, layer.name))
    broken = tmp_path / "broken.int8.onnx"
    onnx.save(model, str(broken))
    return broken


def test_a_scale_forced_wrong_fails_the_gate(exported, sdk, tiny_dataset, tmp_path):
    out, _ = exported
    _, held = calibration_sets(sdk, tiny_dataset, calib_clips=CALIB, holdout_clips=HELD, dataset="ucf101")
    broken = _forced_wrong_scale(out / "onnx" / "model.int8.onnx", tmp_path)
    graphs = {"good": out / "onnx" / "model.int8.onnx", "broken": broken}
    with pytest.raises(AccuracyGateError, match=r"failed on 24 held-out clips of 6 videos: broken: cosine mean") as exc:
        check_int8_accuracy(out / "onnx" / "model.onnx", graphs, held, head="retrieval")
    assert exc.value.report["graphs"]["good"]["passed"] and not exc.value.report["graphs"]["broken"]["passed"]
    assert "good:" not in str(exc.value)


def test_a_forced_wrong_scale_is_never_passed_on_two_held_out_videos(exported, sdk, tiny_dataset, tmp_path):
    """On 2 held-out videos every clip has one other video to match, so no ranking can be wrong (the old
    top-1 agreement was 1.0 there whatever the graph did): the gate refuses the set before running any
    graph, naming the rule; from 3 videos on, the same broken graph fails it."""
    out, _ = exported
    broken = _forced_wrong_scale(out / "onnx" / "model.int8.onnx", tmp_path)
    test_videos = sorted(str(item.path) for item in load_split("ucf101", tiny_dataset, subset="test").items)
    two = video_clips(sdk, test_videos[:2], 8, "two test videos")
    with pytest.raises(CalibrationSourceError) as refused:
        check_int8_accuracy(out / "onnx" / "model.onnx", {"broken": broken}, two, head="retrieval")
    assert str(refused.value) == ("two test videos: the held-out clips come from 2 video(s); "
                                  f"{HELD_OUT_RULE}: {HELD_OUT_REMEDY}")
    three = video_clips(sdk, test_videos[:3], 12, "three test videos")
    with pytest.raises(AccuracyGateError, match=r"failed on 12 held-out clips of 3 videos: broken: cosine mean 0\.\d+ "
                                                 r"\(min 0\.\d+; bound >= 0\.99 MISSED\)"):
        check_int8_accuracy(out / "onnx" / "model.onnx", {"broken": broken}, three, head="retrieval")


def test_a_near_perfect_graph_passes_where_neighbours_are_near_tied(exported, sdk, tmp_path):
    """Held out: two near-identical copies of one clip and another clip. Seen from the other clip the two
    copies tie (0.00001 apart in fp32 cosine) and int8 flips between them, which bare top-1 agreement
    counted as errors (< 0.95 here); the copies' own clips have a clear answer (each other) and are
    judged: agreement 1.0 on those 16, and the gate passes."""
    x0, x1 = _near_identical_videos(tmp_path / "x", 2)
    y0 = _near_identical_videos(tmp_path / "y", 1, class_name="MoveDown", seed=1)[0]
    held = video_clips(sdk, [str(x0), str(x1), str(y0)], 24, "near ties")
    report = check_int8_accuracy(out_dir(exported) / "model.onnx", {"ort": out_dir(exported) / "model.int8.onnx"},
                                 held, head="retrieval")
    figures = report["graphs"]["ort"]
    assert report["passed"] and figures["cosine_mean"] >= 0.9995
    assert figures["judged"] == 16 and figures["agreement"] == 1.0
    assert figures["top1_agreement"] < MIN_AGREEMENT and figures["regret_max"] < TIE_COSINE


def out_dir(exported) -> Path:
    return exported[0] / "onnx"


def _near_identical_videos(folder: Path, count: int, *, class_name: str = "MoveUp", seed: int = 0) -> list[Path]:
    """``count`` H.264 copies of one synthetic clip (40 frames, 32 px), each with its own pixel noise
    (sigma 2 grey levels): the demo model embeds them within 0.00005 cosine of each other."""
    folder.mkdir(parents=True, exist_ok=True)
    base = render_video(class_name, np.random.default_rng(seed), SyntheticConfig(frames=40, height=32, width=32))
    paths = []
    for i in range(count):
        noise = np.random.default_rng(100 + i).normal(0.0, 2.0, base.shape)
        paths.append(folder / f"{class_name}_{i}.mp4")
        _write_mp4(paths[-1], np.clip(np.rint(base + noise), 0, 255).astype(np.uint8), 25)
    return paths


@pytest.fixture(scope="module")
def near_identical_folder(tmp_path_factory) -> Path:
    """Six near-identical videos and one unreadable file (``broken.mp4``)."""
    folder = tmp_path_factory.mktemp("near") / "videos"
    _near_identical_videos(folder, 6)
    (folder / "broken.mp4").write_bytes(b"not a video, just text\n" * 40)
    return folder


def test_skip_bad_export_of_six_near_identical_videos_passes_and_names_the_unreadable_file(demo, near_identical_folder,
                                                                                         tmp_path):
    """A folder of 6 near-identical H.264 clips (3 held out), so every fp32 neighbour is a near-tie.
    With --skip-bad the broken file is left out, named on stderr and in the report, and the near-perfect
    graphs (onnxruntime cosine >= 0.9998) pass, though bare top-1 agreement would have refused them."""
    out = tmp_path / "export"
    done = CliRunner().invoke(cli.main, ["export", str(demo), "--out", str(out), "--int8", "--calibrate",
                                         str(near_identical_folder), "--skip-bad", "--calib-clips", "6",
                                         "--holdout-clips", "24", "--max-batch", "2"])
    assert done.exit_code == 0, done.output
    broken = str(near_identical_folder / "broken.mp4")
    assert [line for line in done.stderr.splitlines() if "skipped" in line] == [
        f"tclr-zoo: skipped {broken}: {_decode_reason(broken)}"]
    assert "(1 unreadable video skipped); gate passed on 24 held-out clips of 3 videos" in done.stdout
    int8 = json.loads((out / "onnx" / "export_report.json").read_text())["int8"]
    assert int8["calibration"]["skipped"] == [{"path": broken, "reason": _decode_reason(broken)}]
    assert int8["calibration"]["videos"] == 3 and int8["gate"]["passed"]
    graphs = int8["gate"]["graphs"]
    assert graphs["model.int8.onnx"]["cosine_mean"] >= 0.9998
    assert min(g["top1_agreement"] for g in graphs.values()) < MIN_AGREEMENT  # the old rule's refusal
    assert all(g["judged"] == 0 and g["agreement"] is None and g["regret_max"] < TIE_COSINE for g in graphs.values())
    assert "agreement not measured (no held-out clip had an answer to get wrong)" in (out / "README.md").read_text()


def _decode_reason(path: str) -> str:
    from tclr_zoo.data.decode import probe

    with pytest.raises(VideoDecodeError) as exc:
        probe(path)
    return exc.value.reason


def test_without_skip_bad_an_unreadable_calibration_video_stops_the_export_in_one_line(demo, near_identical_folder,
                                                                                     tmp_path):
    out = tmp_path / "export"
    done = CliRunner().invoke(cli.main, ["export", str(demo), "--out", str(out), "--int8", "--calibrate",
                                         str(near_identical_folder), "--calib-clips", "6", "--holdout-clips", "6"])
    broken = str(near_identical_folder / "broken.mp4")
    assert done.exit_code == 2, done.output
    assert done.stderr == f"tclr-zoo: error: {broken}: {_decode_reason(broken)}{SKIP_BAD_HINT}\n"
    assert not out.exists()


# ---------------------------------------------------------------- calibration clips


def test_calibration_clips_are_the_sdks_windows_in_bgr(sdk, tiny_dataset):
    """The demo model wants BGR: a calibration clip is bit for bit the SDK's own preprocessing of the
    same window (its fast path that embed uses), and not the RGB clip."""
    video = str(load_split("ucf101", tiny_dataset, subset="train").items[0].path)
    clip = video_clips(sdk, [video], 1, "one").clips[0]
    window = next(sdk._windows(video, None))
    sdk_clip = sdk._batch([window.frames])[0].numpy()
    assert sdk.config["preprocessing"]["channel_order"] == "bgr"
    np.testing.assert_array_equal(clip, sdk_clip)
    indices = spread_windows(sdk.plan, 40, 1)[0].tolist()
    rgb = sdk.preprocess(torch.from_numpy(decode_frames(video, indices, channel_order="rgb"))).numpy()
    assert not np.allclose(clip, rgb) and np.array_equal(clip, rgb[::-1])


def test_spread_windows_known_answers(sdk):
    # 16 frames every 2: a window spans 31 frames; 40 frames give starts 0..9.
    rows = spread_windows(sdk.plan, 40, 4)
    assert rows[:, 0].tolist() == [0, 3, 6, 9] and (np.diff(rows, axis=1) == 2).all()
    assert len(spread_windows(sdk.plan, 40, 50)) == 10
    short = spread_windows(sdk.plan, 20, 3)  # shorter than a window: one mirrored window
    assert short.shape == (1, 16) and short.max() < 20


def test_folder_and_npy_sources_keep_calibration_and_held_out_apart(sdk, tiny_dataset, tmp_path):
    folder = tiny_dataset / "UCF-101"
    calib, held = calibration_sets(sdk, folder, calib_clips=6, holdout_clips=6)
    assert len(calib) == 6 and len(held) == 6 and not set(calib.names) & set(held.names)
    array = tmp_path / "clips.npy"
    np.save(array, np.concatenate([calib.clips, held.clips]))
    c2, h2 = calibration_sets(sdk, array, calib_clips=6, holdout_clips=100)
    np.testing.assert_array_equal(c2.clips, calib.clips)
    np.testing.assert_array_equal(h2.clips, held.clips)
    assert len(set(h2.videos.tolist())) == 6  # each row its own video


def test_every_source_short_of_three_held_out_videos_is_refused_with_one_rule(sdk, near_identical_folder,
                                                                              tiny_dataset, tmp_path):
    """2, 3, 4 and 5 videos in a folder (held out: 1, 1, 2, 2) are refused alike, naming the rule and what
    to give; 6 is the folder minimum (3 held out). A .npy needs --calib-clips + 3 rows, a dataset 3 test videos."""
    videos = sorted(p for p in near_identical_folder.iterdir() if p.name != "broken.mp4")
    for count in (2, 3, 4, 5, 6):
        folder = tmp_path / f"folder{count}"
        folder.mkdir()
        for video in videos[:count]:
            (folder / video.name).write_bytes(video.read_bytes())
        if count == 6:
            calibration, held = calibration_sets(sdk, folder, calib_clips=3, holdout_clips=3)
            assert len(held.names) == 3 and len(calibration.names) == 3
            continue
        with pytest.raises(CalibrationSourceError) as exc:
            calibration_sets(sdk, folder, calib_clips=3, holdout_clips=3)
        assert str(exc.value) == (f"{folder}: {count} video(s), dealt alternately to calibration and held-out: "
                                  f"{count // 2} held out; {HELD_OUT_RULE}: {HELD_OUT_REMEDY}")
    clips = tmp_path / "clips.npy"
    np.save(clips, np.zeros((6, 3, 16, 32, 32), np.float32))
    with pytest.raises(CalibrationSourceError) as exc:
        calibration_sets(sdk, clips, calib_clips=4, holdout_clips=64)
    assert str(exc.value) == (f"{clips}: 6 clips, --calib-clips 4 of them calibrate: 2 held out; {HELD_OUT_RULE}: "
                              f"{HELD_OUT_REMEDY}")
    assert len(calibration_sets(sdk, clips, calib_clips=3, holdout_clips=64)[1].names) == 3
    np.save(clips, np.full((6, 3, 16, 32, 32), 200.0, np.float32))  # pixels not divided by 255
    with pytest.raises(CalibrationSourceError, match=r"clips\.npy: preprocessed clips: float values in \[200, 200\]; "
                                                     r"this model expects values in \[0, 1\]"):
        calibration_sets(sdk, clips, calib_clips=3, holdout_clips=64)
    with pytest.raises(CalibrationSourceError, match=r"need >= 1 calibration clip and >= 3 held-out clips, "
                                                     r"got 8 and 2"):
        calibration_sets(sdk, tiny_dataset, calib_clips=8, holdout_clips=2, dataset="ucf101")


def test_skip_bad_leaves_out_unreadable_videos_and_records_them(sdk, near_identical_folder, tmp_path):
    broken = str(near_identical_folder / "broken.mp4")
    with pytest.raises(VideoDecodeError) as exc:
        calibration_sets(sdk, near_identical_folder, calib_clips=6, holdout_clips=6)
    assert exc.value.path == broken
    calibration, held = calibration_sets(sdk, near_identical_folder, calib_clips=6, holdout_clips=6, skip_bad=True)
    assert calibration.skipped == [{"path": broken, "reason": exc.value.reason}] and held.skipped == []
    assert len(calibration.names) == len(held.names) == 3 and broken not in calibration.names + held.names
    assert calibration.describe()["skipped"] == calibration.skipped
    # A video that fails while its clips are decoded gives none of them, and the next one is used.
    good = sorted(str(p) for p in near_identical_folder.iterdir() if p.name != "broken.mp4")
    skipped: list = []
    clips = video_clips(sdk, [broken, good[0]], 4, "two", skipped)  # 2 clips a video
    assert clips.names == [good[0]] and len(clips) == 2 and clips.videos.tolist() == [0, 0]
    assert skipped == clips.skipped == [{"path": broken, "reason": exc.value.reason}]


def test_cli_refuses_bad_int8_requests(demo, tiny_dataset, tmp_path):
    runner = CliRunner()
    base = ["export", str(demo), "--out", str(tmp_path / "out")]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3, 8, 32, 32), np.float32))
    one_video = tmp_path / "one"
    one_video.mkdir()
    (one_video / "a.mp4").write_bytes(next((tiny_dataset / "UCF-101").rglob("*.mp4")).read_bytes())
    for args, message in [
        (["--int8"], "--int8 needs --calibrate SOURCE"),
        (["--calibrate", str(tiny_dataset)], "--calibrate is for --int8"),
        (["--triton", "--triton-graph", "int8"], "--triton-graph int8 needs --triton and --int8"),
        (["--int8", "--calibrate", str(bad)], "expected preprocessed float clips [N, 3, 16, 32, 32]"),
        (["--int8", "--calibrate", str(one_video)], f"1 video(s), dealt alternately to calibration and held-out: "
                                                     f"0 held out; {HELD_OUT_RULE}: {HELD_OUT_REMEDY}"),
        (["--skip-bad"], "--skip-bad skips unreadable --calibrate videos; it needs --int8 --calibrate"),
        (["--int8", "--calibrate", str(tiny_dataset), "--holdout-clips", "2"], "2 is not in the range x>=3"),
        (["--int8", "--calibrate", str(tiny_dataset), "--dataset", "hmdb51"], "_test_split<N>.txt"),
        (["--int8", "--calibrate", str(tmp_path / "missing")], "does not exist"),
    ]:
        result = runner.invoke(cli.main, base + args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- TensorRT's QDQ rules
# (each rule on a graph that breaks only it: tests/export/test_export_checks.py)

SHAPE = ["batch", 3, 16, 32, 32]


def test_the_hand_built_qdq_graph_passes_the_tensorrt_rules():
    report = check_graph(qdq_model(), input_shape=SHAPE, output_names=["embedding"], quantized="tensorrt",
                         allowed_ops=frozenset({"Conv", "ReduceMean"}))
    assert report["checks_passed"] == list(RULES + QDQ_RULES["tensorrt"])
    assert report["quantized"] == {"runtime": "tensorrt", "quantize_nodes": 1, "dequantize_nodes": 2,
                                   "compute_ops": 1, "quantized_compute_ops": 1}


def test_the_onnxruntime_int8_graph_is_not_a_tensorrt_graph(exported):
    """U8S8 passes its own rules but not TensorRT's: uint8 activations with non-zero zero points."""
    out, _ = exported
    with pytest.raises(GraphCheckError, match=r"qdq_int8_zero_points.*is uint8") as exc:
        check_graph(out / "onnx" / "model.int8.onnx", input_shape=SHAPE, output_names=["retrieval"],
                    quantized="tensorrt")
    assert {rule for rule, _ in exc.value.violations} == {"qdq_int8_zero_points"}
    report = check_graph(qdq_model(zero_point=128, zp_type=TensorProto.UINT8), input_shape=SHAPE,
                         output_names=["embedding"], quantized="onnxruntime",
                         allowed_ops=frozenset({"Conv", "ReduceMean"}))
    assert report["checks_passed"] == list(RULES + QDQ_RULES["onnxruntime"])


def test_calibration_methods_are_one_list():
    assert tuple(quantize.METHODS) == CALIBRATION_METHODS
    assert quantize.input_range({"value_range": [0, 1], "mean": None, "std": None}) == (0.0, 1.0)
    assert quantize.input_range({"value_range": [0, 1], "mean": [0.5, 0.25, 0.5],
                                 "std": [0.25, 0.25, 0.5]}) == (-2.0, 3.0)


# ---------------------------------------------------------------- deployment recipes


def test_triton_serves_the_int8_graph_and_trt_script_wants_it(exported, tmp_path):
    out, _ = exported
    repo = write_model_repository(out, tmp_path / "repo", int8=True, kind="KIND_CPU")
    assert (repo / "1" / "model.onnx").read_bytes() == (out / "onnx" / "model.int8.onnx").read_bytes()
    assert "serving onnx/model.int8.onnx" in (repo / "config.pbtxt").read_text()
    with pytest.raises(TritonError, match="--fp16 or --int8"):
        write_model_repository(out, tmp_path / "repo2", int8=True, fp16=True)
    fp32_only = tmp_path / "fp32"
    fp32_only.mkdir()
    config = json.loads((out / "config.json").read_text())
    config["export"]["onnx"] = {"fp32": "onnx/model.onnx"}
    (fp32_only / "config.json").write_text(json.dumps(config))
    (fp32_only / "onnx").mkdir()
    (fp32_only / "onnx" / "model.onnx").write_bytes((out / "onnx" / "model.onnx").read_bytes())
    with pytest.raises(TritonError, match="no int8 ONNX graph.*--int8 --calibrate SOURCE"):
        write_model_repository(fp32_only, tmp_path / "repo3", int8=True)
    done = subprocess.run([sys.executable, str(ROOT / "export" / "build_trt_engine.py"), str(fp32_only), "--int8"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no int8 TensorRT graph (onnx/model.int8.trt.onnx)" in done.stderr


# ---------------------------------------------------------------- using the int8 graph


def test_the_sdk_and_the_cli_run_the_int8_graph_close_to_fp32(exported, tiny_dataset, tmp_path):
    out, _ = exported
    video = str(sorted((tiny_dataset).rglob("*.mp4"))[0])
    int8 = tclr_zoo.load_model(out, backend="onnx", precision="int8", device="cpu")
    fp32 = tclr_zoo.load_model(out, backend="onnx", device="cpu")
    assert int8.backend.graph_path.name == "model.int8.onnx" and fp32.backend.graph_path.name == "model.onnx"
    cosine = torch.nn.functional.cosine_similarity(int8.embed(video), fp32.embed(video)).item()
    assert cosine >= 0.99, cosine
    done = CliRunner().invoke(cli.main, ["embed", str(out), video, "--out", str(tmp_path / "e.npy"), "--backend",
                                         "onnx", "--precision", "int8", "--device", "cpu", "--no-progress"])
    assert done.exit_code == 0, done.output
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "e.npy")), int8.embed(video), atol=1e-6, rtol=0)
    card = (out / "README.md").read_text()
    assert "int8 (static QDQ, percentile calibration on 8 clips" in card
    assert "`model.int8.onnx`: cosine mean" in card and "`model.int8.trt.onnx`: cosine mean" in card


def test_int8_picks_the_tensorrt_graph_only_on_tensorrt():
    from tclr_zoo.inference.backends import CPU, CUDA, TENSORRT, BackendError, graph_key

    assert graph_key("int8", TENSORRT) == "int8_trt"
    assert graph_key("int8", CUDA) == graph_key("int8", CPU) == "int8"
    assert graph_key("fp16", TENSORRT) == "fp16"
    with pytest.raises(BackendError, match="fp32, fp16, int8 for the onnx backend"):
        graph_key("bf16", CPU)
