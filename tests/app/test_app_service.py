"""The app's logic without a browser or a server (tclr_zoo.app.service, about, strips): search by upload
and by row over real indexes of the tiny synthetic videos, moments with their windows, the serving
rule, classification and the about panel."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from app_helpers import LABELS, app_models, build_index
from app_helpers import video_index as shared_video_index

from tclr_zoo.app.about import export_facts
from tclr_zoo.app.service import (
    AppError,
    SearchService,
    display_name,
    media_type,
    seconds_text,
    upload_suffix,
    window_url,
)
from tclr_zoo.app.strips import STRIP_FRAMES, STRIP_HEIGHT, strip_indices
from tclr_zoo.data.decode import VideoInfo


@pytest.fixture(scope="module")
def videos(tiny_dataset) -> list[str]:
    return sorted(str(p) for p in tiny_dataset.rglob("*.mp4"))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return app_models(tmp_path_factory)


@pytest.fixture(scope="module")
def video_index(videos, tmp_path_factory) -> Path:
    return shared_video_index(tmp_path_factory, videos)


@pytest.fixture(scope="module")
def service(video_index) -> SearchService:
    return SearchService.open(video_index)


@pytest.fixture(scope="module")
def moments(models, videos, tmp_path_factory) -> SearchService:
    index = build_index(models["classifier"], videos[:6], tmp_path_factory.mktemp("app-index") / "windows",
                        windows=True)
    return SearchService.open(index)


def test_search_by_upload_finds_each_querys_own_video_first(service, videos, tmp_path):
    """Every video of the dataset, uploaded under another name, finds itself first."""
    found = 0
    for video in videos:
        query = tmp_path / "query.mp4"
        shutil.copyfile(video, query)
        result = service.search_video(query, name="my clip.mp4", k=3)
        top = result["hits"][0]
        found += top["name"] == Path(video).name and top["row"] == service.index.paths.index(video)
        assert result["query"] == {"kind": "upload", "name": "my clip.mp4"}
        assert [h["rank"] for h in result["hits"]] == [1, 2, 3]
        assert top["score"] == pytest.approx(1.0, abs=1e-5)
    assert found == len(videos) == 18


def test_search_by_row_puts_the_row_first_then_by_score(service):
    result = service.search_row(7, k=5)
    hits = result["hits"]
    assert result["query"]["kind"] == "row" and result["query"]["row"] == 7
    assert hits[0]["row"] == 7 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 5 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["media_url"] == f"/media/{h['row']}" and h["strip_url"] == f"/strip/{h['row']}.png" for h in hits)
    assert service.search_row(0)["hits"].__len__() == service.k == 10


def test_windows_index_gives_moments_with_start_and_end(moments, videos, tmp_path):
    query = tmp_path / "query.mp4"
    shutil.copyfile(videos[2], query)
    result = moments.search_video(query, name="query.mp4", k=6)
    assert result["windows"] is True
    index = moments.index
    for hit in result["hits"]:
        assert hit["start"] is not None and hit["end"] > hit["start"]
        assert (hit["start"], hit["end"]) == (index.starts[hit["row"]], index.ends[hit["row"]])
        assert hit["window_url"] == f"/media/{hit['row']}#t={seconds_text(hit['start'])},{seconds_text(hit['end'])}"
    assert result["hits"][0]["name"] == Path(videos[2]).name
    later = [h for h in result["hits"] if h["start"] > 0]
    assert later, "the 40-frame videos have a second window"


def test_window_urls_and_seconds():
    assert window_url(3, 0.36, 1.24) == "/media/3#t=0.36,1.24"
    assert window_url(3, 0.0, 2.0) == "/media/3#t=0,2"
    assert window_url(3, None, None) == "/media/3"
    assert [seconds_text(t) for t in (0.0, 1e-7, 12.5, 1 / 3, -0.0)] == ["0", "0", "12.5", "0.333333", "0"]


def test_serving_rule_serves_indexed_rows_only(service, videos, tmp_path):
    index = service.index
    for row in range(len(index)):
        assert service.media(row).path == Path(index.paths[row])
        assert service.media(row).media_type == "video/mp4"
    for bad in (-1, len(index), 10**9, True, "0", "../../../etc/passwd", videos[0], 1.0, None):
        with pytest.raises(AppError) as refused:
            service.media(bad)
        assert refused.value.status == 404 and "no row" in refused.value.message


def test_serving_rule_refuses_a_vanished_file(models, videos, tmp_path):
    copy = tmp_path / "gone.mp4"
    shutil.copyfile(videos[0], copy)
    gone = SearchService.open(build_index(models["classifier"], [str(copy), videos[1]], tmp_path / "index"))
    assert gone.strip_png(0)[:8] == b"\x89PNG\r\n\x1a\n"
    copy.unlink()
    for serve in (gone.media, gone.strip_png):
        with pytest.raises(AppError, match="gone.mp4: the file the index lists for row 0 is missing") as refused:
            serve(0)
        assert refused.value.status == 404
    assert gone.media(1).path == Path(videos[1])
    missing = {hit["row"]: hit["missing"] for hit in gone.search_row(1, k=2)["hits"]}
    assert missing == {0: True, 1: False}  # the page marks the hit whose file has gone


def test_frame_strip_shows_frames_of_the_window(moments):
    from PIL import Image

    later = next(r for r, s in enumerate(moments.index.starts) if s)
    strip = Image.open(io.BytesIO(moments.strip_png(later)))
    assert strip.height == STRIP_HEIGHT and strip.width > STRIP_FRAMES * STRIP_HEIGHT * 0.9
    assert moments.strip_png(later) is moments.strip_png(later)  # cached
    info = VideoInfo("v.mp4", num_frames=40, fps=25.0, width=32, height=32)
    assert strip_indices(info, 0.36, 1.6) == [12, 20, 28, 36]  # frames 9..39, centres of 4 parts
    assert strip_indices(info, None, None) == [5, 15, 25, 35]
    assert strip_indices(VideoInfo("v", 2, 25.0, 32, 32), None, None) == [0, 1]


def test_classify_gives_top_labels_with_probabilities(service, videos):
    result = service.classify_video(videos[0], name="a.mp4")
    classes = result["classes"]
    assert [c["label"] for c in classes] and {c["label"] for c in classes} == set(LABELS)  # 3 labels < top 5
    probabilities = [c["probability"] for c in classes]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_classify_without_a_classifier_says_so(models, videos, tmp_path):
    plain = SearchService.open(build_index(models["plain"], videos[:2], tmp_path / "plain-index"))
    with pytest.raises(AppError, match="has no classifier, so it cannot classify") as refused:
        plain.classify_video(videos[0], name="a.mp4")
    assert refused.value.status == 409
    assert plain.about()["model"]["classifier"] is None


def test_an_undecodable_upload_gives_the_decoders_reason_under_the_clients_name(service, tmp_path):
    broken = tmp_path / "tmp-upload-xyz.mp4"
    broken.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(AppError) as refused:
        service.search_video(broken, name="holiday.mp4")
    message = refused.value.message
    assert refused.value.status == 422
    assert message.startswith("holiday.mp4: ") and "cannot open" in message and str(tmp_path) not in message


def test_another_model_than_the_indexs_is_refused(models, video_index):
    with pytest.raises(AppError, match="is not the model this index was built with"):
        SearchService.open(video_index, model=str(models["plain"]))
    assert SearchService.open(video_index, model=str(models["classifier"])).model.model_id.endswith("classifier")


def test_about_panel(service):
    about = service.about()
    index = service.index
    assert about["model"]["id"] == index.model_id and about["model"]["revision"] == index.revision
    assert about["model"]["classifier"] == 3 and about["model"]["backend"] == "torch"
    pre = about["preprocessing"]
    assert pre["channel_order"] == "BGR" and "BGR" in pre["note"] and (pre["frames"], pre["size"]) == (16, 112)
    assert about["index"]["rows"] == about["index"]["videos"] == 18 and about["index"]["head"] == "retrieval"
    assert about["index"]["kind"] == "one row per video" and about["index"]["search"] == "exact (torch)"
    assert about["export"]["status"] == "not exported" and about["export"]["int8"] == "no int8 graph"


def test_export_facts_read_the_config_export_entry():
    config = {"export": {"head": "retrieval", "max_batch": 8, "opset": 20,
                         "onnx": {"fp32": "onnx/model.onnx", "int8": "onnx/model.int8.onnx",
                                  "report": "onnx/export_report.json"},
                         "int8": {"calibration_method": "percentile", "int8": "onnxruntime, U8S8"}}}
    facts = export_facts(config)
    assert facts["status"] == "exported: ONNX opset 20, head retrieval, batch 1..8"
    assert facts["graphs"] == {"fp32": "onnx/model.onnx", "int8": "onnx/model.int8.onnx"}
    assert facts["int8"] == "calibrated (percentile); int8: onnxruntime, U8S8" and facts["hint"] is None


def test_items_page_and_filter(service):
    page = service.items(offset=2, limit=5)
    assert page["total"] == 18 and [item["row"] for item in page["items"]] == [2, 3, 4, 5, 6]
    moving = service.items(contains="movedown")
    assert moving["total"] == 6 and all("MoveDown" in item["id"] for item in moving["items"])
    with pytest.raises(AppError):
        service.items(limit=0)


def test_client_names_are_only_echoed_never_used():
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\videos\\clip.mp4") == "clip.mp4"
    assert display_name("a\x00b\nc\u202e.mp4") == "abc.mp4"
    assert display_name("") == display_name(None) == "upload"
    assert len(display_name("x" * 500)) == 120
    assert [upload_suffix(n) for n in ("x.MP4", "x.y4m", "x", "x.tar;rm -rf", "x.verylongext")] == [
        ".mp4", ".y4m", "", "", ""]
    assert media_type("a.WEBM") == "video/webm" and media_type("a.avi") == "video/x-msvideo"
    assert media_type("a.bin") == "application/octet-stream"
