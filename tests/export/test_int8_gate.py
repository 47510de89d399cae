"""The int8 accuracy gate's rule on outputs with known answers: regret of the int8 answer under
fp32's scores, near-ties forgiven, clips judged only where a wrong answer is possible, each bound failing
alone, and the smallest held-out set.

The graphs here are hand-built ONNX pairs run by onnxruntime through ``check_int8_accuracy``: each clip
carries both outputs, the "fp32" graph returns the first, the "int8" graph the second, so a test states
exactly what int8 got wrong. Real quantized graphs are gated in test_quantize.py.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tclr_zoo.export.accuracy import (
    AccuracyGateError,
    answer_scores,
    check_int8_accuracy,
    gate_figures,
    judge_answers,
    passes,
)
from tclr_zoo.export.calibration import CalibrationSourceError, ClipSet
from tclr_zoo.export.int8_options import (
    HELD_OUT_RULE,
    MIN_AGREEMENT,
    MIN_COSINE,
    TIE_COSINE,
    TIE_PROBABILITY,
    Int8Options,
)

INF = np.inf


# ---------------------------------------------------------------- the rule on scores


def test_regret_and_judged_agreement_known_answers():
    # rows: queries; columns: candidate videos (-inf: the query's own video); scores are fp32 cosines
    fp32 = np.array([[-INF, 0.90, 0.80],
                     [0.90, -INF, 0.8995],
                     [0.80, 0.8995, -INF]])
    int8 = np.array([[-INF, 0.1, 0.2],  # picks column 2: fp32 scores it 0.10 below its best -> a miss
                     [0.5, -INF, 0.6],  # picks 2, 0.0005 below 0.90: only tied answers -> not judged
                     [0.3, 0.4, -INF]])  # picks 1, fp32's own pick
    got = judge_answers(fp32, int8, tie=1e-3)
    assert got["judged"] == 2 and got["queries"] == 3
    assert got["agreement"] == 0.5
    assert got["regret_max"] == pytest.approx(0.10)
    assert got["regret_mean"] == pytest.approx((0.10 + 0.0005 + 0.0) / 3)
    assert got["top1_agreement"] == pytest.approx(1 / 3)  # bare top-1 counts the tie as an error


def test_a_near_tie_is_forgiven_but_a_clear_miss_is_not():
    fp32 = np.array([[-INF, 0.90, 0.8996, 0.50],
                     [0.90, -INF, 0.8996, 0.50]])
    int8 = np.array([[-INF, 0.1, 0.3, 0.2],  # picks the near-tie (regret 0.0004 <= 0.001): agrees
                     [0.1, -INF, 0.2, 0.3]])  # picks 0.50 (regret 0.40): a miss
    got = judge_answers(fp32, int8, tie=1e-3)
    assert got["judged"] == 2 and got["agreement"] == 0.5 and got["top1_agreement"] == 0.0
    assert got["regret_max"] == pytest.approx(0.40)


def test_two_held_out_videos_are_no_evidence_whatever_int8_answers():
    """One candidate per query: bare top-1 agreement was 1.0 for any graph; here nothing is judged."""
    fp32 = np.array([[-INF, 0.3], [0.3, -INF]])
    got = judge_answers(fp32, np.array([[-INF, -5.0], [7.0, -INF]]), tie=1e-3)
    assert got["judged"] == 0 and got["agreement"] is None and got["regret_max"] == 0.0
    assert got["top1_agreement"] == 1.0  # what the old gate reported


def test_logits_regret_is_in_fp32_probability():
    fp32 = np.array([[0.50, 0.495, 0.005],  # top-2 tie: int8's class 1 costs 0.005 <= 0.01
                     [0.70, 0.20, 0.10]])  # int8's class 2 costs 0.60
    int8 = np.array([[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    got = judge_answers(fp32, int8, tie=TIE_PROBABILITY)
    assert got["judged"] == 2 and got["agreement"] == 0.5
    assert got["regret_max"] == pytest.approx(0.60) and got["regret_mean"] == pytest.approx(0.3025)


def test_answer_scores_known_answers():
    # A video is the mean of its clips: [1, 0] and [0, 1] make video 0 the diagonal, which the query
    # [0.7, 0.7] (video 2) matches exactly, though its nearest single clip ([1, 0.3], video 1) is closer.
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.3], [0.7, 0.7]])
    scores = answer_scores(rows, np.array([0, 0, 1, 2]), "retrieval")
    assert scores[3, 0] == pytest.approx(1.0) and scores[3, 1] == pytest.approx(1.3 / math.hypot(1, 0.3) / math.sqrt(2))
    assert np.isneginf(scores[3, 2]) and np.isneginf(scores[0, 0]) and np.isneginf(scores[2, 1])
    probabilities = answer_scores(np.array([[0.0, math.log(3.0)]]), np.zeros(1), "logits")
    np.testing.assert_allclose(probabilities, [[0.25, 0.75]])


def test_passes_needs_both_bounds_and_skips_an_unmeasured_agreement():
    figures = {"cosine_mean": 0.995, "agreement": 0.96}
    assert passes(figures)
    assert not passes({**figures, "cosine_mean": 0.97})  # cosine alone, between 0.95 and 0.99
    assert not passes({**figures, "agreement": 0.94})  # agreement alone
    assert passes({**figures, "agreement": None})  # nothing to judge: the cosine decides
    assert not passes({"cosine_mean": float("nan"), "agreement": None})


# ---------------------------------------------------------------- the gate on hand-built graphs

ANGLES = (0.0, 2.0, 6.0)  # degrees: three videos on an arc, A's nearest B, B's A, C's B, all clear


def _arc(degrees) -> np.ndarray:
    radians = np.radians(np.asarray(degrees, dtype=float))
    return np.stack([np.cos(radians), np.sin(radians), 0 * radians, 0 * radians], axis=1)


def _graphs(tmp_path, head="retrieval"):
    """``video`` [batch, 2, 4, 1, 1] -> Flatten -> MatMul: the fp32 graph outputs the first 4 numbers of
    each clip, the "int8" graph the last 4."""
    paths = {}
    for name, rows in (("fp32", slice(0, 4)), ("int8", slice(4, 8))):
        pick = np.zeros((8, 4), np.float32)
        pick[rows] = np.eye(4, dtype=np.float32)
        graph = helper.make_graph(
            [helper.make_node("Flatten", ["video"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "pick"], [head])], "pair",
            [helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", 2, 4, 1, 1])],
            [helper.make_tensor_value_info(head, TensorProto.FLOAT, ["batch", 4])],
            initializer=[numpy_helper.from_array(pick, "pick")])
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), paths[name])
    return paths


def _held_out(fp32_rows, int8_rows, videos=None) -> ClipSet:
    clips = np.stack([fp32_rows, int8_rows], axis=1).astype(np.float32)[..., None, None]
    videos = np.arange(len(clips)) if videos is None else np.asarray(videos)
    return ClipSet(clips, videos, [f"v{v}" for v in sorted(set(videos.tolist()))], "hand-made")


def _gate(tmp_path, held, head="retrieval"):
    paths = _graphs(tmp_path, head)
    return check_int8_accuracy(paths["fp32"], {"int8": paths["int8"]}, held, head=head)


def test_a_uniform_rotation_at_cosine_097_fails_on_cosine_alone(tmp_path):
    """Every row turned by the same angle out of its plane: every neighbour kept (agreement 1.0), cosine
    0.97 -- above the agreement bound, below the cosine bound: the cosine bound alone fails it."""
    fp32 = _arc(ANGLES)
    c, s = 0.97, math.sqrt(1 - 0.97 ** 2)
    int8 = np.concatenate([c * fp32[:, :2], s * fp32[:, :2]], axis=1)  # an isometry: inner products kept
    assert MIN_AGREEMENT < 0.97 < MIN_COSINE
    with pytest.raises(AccuracyGateError) as exc:
        _gate(tmp_path, _held_out(fp32, int8))
    figures = exc.value.report["graphs"]["int8"]
    assert figures["cosine_mean"] == pytest.approx(0.97, abs=1e-6) and figures["agreement"] == 1.0
    assert figures["judged"] == 3 and not figures["passed"]
    message = str(exc.value)
    assert "int8: cosine mean 0.97000" in message and f"bound >= {MIN_COSINE} MISSED" in message
    assert "agreement 1.0000 on 3 of 3 clips judged" in message and f"(bound >= {MIN_AGREEMENT} met)" in message


def test_wrong_neighbours_at_cosine_099_fail_on_agreement_alone(tmp_path):
    """Video A (at 0 deg) comes out of int8 at 8 deg, past C: cosine cos(8 deg) = 0.9903 for A and 1 for
    the others, but every clip's int8 answer is one fp32 scores clearly below its best."""
    fp32, int8 = _arc(ANGLES), _arc((8.0, 2.0, 6.0))
    with pytest.raises(AccuracyGateError) as exc:
        _gate(tmp_path, _held_out(fp32, int8))
    figures = exc.value.report["graphs"]["int8"]
    cos = np.cos(np.radians([2.0, 4.0, 6.0]))  # fp32 scores at 2, 4 and 6 degrees apart
    assert figures["cosine_mean"] == pytest.approx((math.cos(math.radians(8)) + 2) / 3)
    assert figures["cosine_mean"] >= MIN_COSINE
    assert figures["agreement"] == 0.0 and figures["judged"] == 3 and figures["top1_agreement"] == 0.0
    # A answers C (6 deg, best B at 2), B answers C (4, best A at 2), C answers A (6, best B at 4)
    assert figures["regret_max"] == pytest.approx(cos[0] - cos[2], abs=1e-6)
    assert figures["regret_mean"] == pytest.approx(((cos[0] - cos[2]) + (cos[0] - cos[1]) + (cos[1] - cos[2])) / 3,
                                                   abs=1e-6)
    message = str(exc.value)
    assert f"bound >= {MIN_COSINE} met" in message and "agreement 0.0000 on 3 of 3 clips judged" in message
    assert f"(bound >= {MIN_AGREEMENT} MISSED)" in message


def test_flips_between_near_tied_videos_pass(tmp_path):
    """Videos A (two clips), B, C, D at 0, 3, 3.0001 and 40 deg: B and C tie for every other video, and
    int8 swaps them. Bare top-1 agreement is 0.4 (A's two clips and D flip); the cosine is 0.99999 and
    every answer ties with fp32's: the gate passes with agreement 1.0."""
    fp32 = _arc((0.0, 3.0, 3.0001, 0.0, 40.0))
    int8 = _arc((0.0, 3.0001, 3.0, 0.0, 40.0))
    report = _gate(tmp_path, _held_out(fp32, int8, videos=[0, 1, 2, 0, 3]))
    figures = report["graphs"]["int8"]
    assert report["passed"] and figures["passed"] and figures["agreement"] == 1.0
    assert figures["top1_agreement"] == pytest.approx(0.4) and figures["regret_max"] < TIE_COSINE
    assert figures["cosine_mean"] > 0.99999 and figures["judged"] == 5


def test_held_out_clips_of_two_videos_are_refused_before_any_graph_runs(tmp_path):
    held = _held_out(_arc((0.0, 1.0, 50.0)), _arc((90.0, 120.0, 0.0)), videos=[0, 0, 1])
    missing = tmp_path / "not-there.onnx"
    with pytest.raises(CalibrationSourceError) as exc:
        check_int8_accuracy(missing, {"broken": missing}, held, head="retrieval")
    assert "the held-out clips come from 2 video(s)" in str(exc.value) and HELD_OUT_RULE in str(exc.value)


LOGITS = np.array([[2.0, 1.99, -3.0, 0.0],  # the top two classes 0.005 apart in fp32 probability: a tie
                   [30.0, 28.0, 0.0, 0.0],  # class 0 at probability 0.88, class 1 at 0.12: clear
                   [0.0, 0.0, 5.0, 0.0]])


def test_logits_head_forgives_a_swap_of_tied_classes(tmp_path):
    int8 = LOGITS.copy()
    int8[0, :2] = int8[0, 1::-1]
    report = _gate(tmp_path, _held_out(LOGITS, int8), head="logits")
    figures = report["graphs"]["int8"]
    assert report["passed"] and figures["agreement"] == 1.0 and figures["judged"] == 3
    assert figures["top1_agreement"] == pytest.approx(2 / 3) and figures["tie"] == TIE_PROBABILITY


def test_logits_head_fails_a_clear_class_swap_at_cosine_0998(tmp_path):
    int8 = LOGITS.copy()
    int8[1, :2] = int8[1, 1::-1]
    with pytest.raises(AccuracyGateError, match=r"top-1 class agreement 0.6667 on 3 of 3 clips judged .*MISSED"):
        _gate(tmp_path, _held_out(LOGITS, int8), head="logits")
    figures = gate_figures(LOGITS, int8, np.arange(3), "logits")
    assert figures["cosine_mean"] == pytest.approx((2 + 1680 / 1684) / 3) and figures["cosine_mean"] >= MIN_COSINE
    p = 1 / (1 + math.exp(-2))  # fp32's probability of class 0 in row 1; int8 answers class 1 at 1 - p
    assert figures["regret_max"] == pytest.approx(p - (1 - p), rel=1e-6)


def test_holdout_clips_below_the_minimum_are_refused_with_the_rule():
    with pytest.raises(ValueError, match=r"--holdout-clips must be >= 3, got 2: " + HELD_OUT_RULE.replace("(", r"\(")
                       .replace(")", r"\)")):
        Int8Options("videos/", holdout_clips=2).check()


def test_the_held_out_minimum_reads_the_same_in_the_messages_the_help_and_export_readme():
    from pathlib import Path

    from click.testing import CliRunner

    from tclr_zoo import cli
    from tclr_zoo.export.int8_options import HELD_OUT_REMEDY

    def squeezed(text: str) -> str:  # click wraps --help (also at hyphens); markdown adds backticks
        return "".join(text.replace("`", "").split()).lower()

    readme = squeezed((Path(__file__).resolve().parents[2] / "export" / "README.md").read_text())
    assert squeezed(HELD_OUT_RULE) in readme and squeezed(HELD_OUT_REMEDY.removeprefix("give ")) in readme
    assert squeezed(HELD_OUT_RULE) in squeezed(CliRunner().invoke(cli.main, ["export", "--help"]).output)
