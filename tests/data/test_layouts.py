"""``load_split``: UCF101, HMDB51, Kinetics-400, folder and CSV layouts as users download them.

Each test writes small list files in the official format (with the quirks met in the wild:
Windows line endings, a UTF-8 BOM, trailing blanks, blank lines, 1-based class indices) and
tiny video files (copies of one real mp4: the reader only checks existence and size).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from tclr_zoo.data.datasets import (
    DATASETS,
    DatasetError,
    DatasetNotFoundError,
    VideoList,
    load_split,
    read_ucf_split,
)
from tclr_zoo.data.synthetic import SyntheticConfig, generate, layout_relpath, split_role

BOM = "\ufeff"


@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "tiny.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path.read_bytes()


def write(path: Path, text: str, *, crlf: bool = False, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(((BOM if bom else "") + text).encode("utf-8"))
    return path


def videos(root: Path, rels, data: bytes) -> None:
    for rel in rels:
        write(root / rel, "").write_bytes(data)


def names(videos: VideoList, root: Path) -> list[tuple[str, int]]:
    return [(item.path.relative_to(root).as_posix(), item.label) for item in videos.items]


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tclr_zoo" and r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------------------
# UCF101
# ------------------------------------------------------------------------------------------


@pytest.fixture
def ucf(tmp_path, mp4_bytes) -> Path:
    root = tmp_path / "UCF101"
    lists = root / "ucfTrainTestlist"
    # classInd as shipped: CRLF, 1-based; plus a BOM, trailing blanks and a blank line.
    write(lists / "classInd.txt", "1 ApplyEyeMakeup \n2 Archery\t\n\n3 HandstandPushups\n", crlf=True, bom=True)
    write(lists / "trainlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
          "Archery/v_Archery_g08_c01.avi 2  \n"
          "\n"
          "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n"  # UCF101's own case mismatch in file names
          "v_Archery_g09_c01.avi 2\n"  # no class folder: taken from the file name
          "Archery/v_Archery_g10_c01.avi 2\n"  # listed, not on disk
          "Archery/v_Archery_g11_c01.avi 2\n",  # empty file
          crlf=True)
    write(lists / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n",
          crlf=True)
    videos(root / "UCF-101", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g08_c01.avi",
                              "HandstandPushups/v_HandStandPushups_g08_c01.avi", "Archery/v_Archery_g09_c01.avi",
                              "Archery/v_Archery_g01_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"],
           mp4_bytes)
    write(root / "UCF-101/Archery/v_Archery_g11_c01.avi", "")
    return root


def test_ucf101_official_layout_with_quirks(ucf, caplog):
    caplog.set_level(logging.WARNING, logger="tclr_zoo")
    train = load_split("ucf101", ucf, split=1, subset="train")
    assert train.class_names == ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    assert (train.dataset, train.split, train.subset) == ("ucf101", 1, "train")
    assert names(train, ucf) == [
        ("UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0), ("UCF-101/Archery/v_Archery_g08_c01.avi", 1),
        ("UCF-101/HandstandPushups/v_HandStandPushups_g08_c01.avi", 2), ("UCF-101/Archery/v_Archery_g09_c01.avi", 1),
    ]
    assert [p.relative_to(ucf).as_posix() for p in train.missing] == [
        "UCF-101/Archery/v_Archery_g10_c01.avi", "UCF-101/Archery/v_Archery_g11_c01.avi"]
    [warning] = warnings_of(caplog)
    assert "2 of 6" in warning and "trainlist01.txt" in warning and "v_Archery_g10_c01.avi" in warning
    test = load_split("ucf101", ucf, subset="test")
    assert [i.label for i in test.items] == [1, 0] and test.missing == []
    # check=False: no file system checks, everything listed is kept
    assert len(load_split("ucf101", ucf, check=False).items) == 6
    # the training code's entry point: same items, no checks
    items, classes = read_ucf_split(ucf, 1, "test")
    assert items == test.items and classes == test.class_names


def test_ucf101_errors_name_the_file_and_line(ucf):
    lists = ucf / "ucfTrainTestlist"
    write(lists / "testlist02.txt", "Archery/v_Archery_g01_c01.avi\r\n\r\nSkiing/v_Skiing_g01_c01.avi\r\n")
    with pytest.raises(DatasetError, match=r"testlist02\.txt:3: class 'Skiing' is not in .*classInd\.txt"):
        load_split("ucf101", ucf, split=2, subset="test")
    with pytest.raises(DatasetNotFoundError, match="trainlist04.txt") as err:
        load_split("ucf101", ucf, split=4)
    assert isinstance(err.value, FileNotFoundError)  # CLI: exit 2
    write(lists / "classInd.txt", "1 ApplyEyeMakeup\nArchery\n")
    with pytest.raises(DatasetError, match=r"classInd\.txt:2: expected '<index> <ClassName>'"):
        load_split("ucf101", ucf)
    write(lists / "trainlist03.txt", "\r\n  \r\n")
    write(lists / "classInd.txt", "1 ApplyEyeMakeup\n")
    with pytest.raises(DatasetError, match=r"trainlist03\.txt: lists no train videos"):
        load_split("ucf101", ucf, split=3)
    with pytest.raises(DatasetError, match="subset"):
        load_split("ucf101", ucf, subset="val")


def test_ucf101_nothing_on_disk_is_an_error_and_the_warning_is_capped(tmp_path, caplog):
    root = tmp_path / "ucf"
    write(root / "ucfTrainTestlist/classInd.txt", "1 Archery\n")
    write(root / "ucfTrainTestlist/trainlist01.txt",
          "".join(f"Archery/v_Archery_g{g:02d}_c01.avi 1\n" for g in range(8)))
    with pytest.raises(DatasetError, match=r"8 of 8 videos .* none is left"):
        load_split("ucf101", root)
    (root / "UCF-101/Archery").mkdir(parents=True)
    (root / "UCF-101/Archery/v_Archery_g07_c01.avi").write_bytes(b"\0" * 10)
    caplog.set_level(logging.WARNING, logger="tclr_zoo")
    videos = load_split("ucf101", root)
    assert len(videos.items) == 1 and len(videos.missing) == 7
    [warning] = warnings_of(caplog)
    assert "7 of 8" in warning and "and 2 more" in warning
    assert "g04_c01" in warning and "g05_c01" not in warning  # the first 5 paths only


def test_ucf101_also_reads_the_videos_splits_layout(tmp_path, mp4_bytes):
    root = tmp_path / "legacy"
    write(root / "splits/classInd.txt", "1 Blink\n2 Grow\n")
    write(root / "splits/trainlist01.txt", "Grow/v_Grow_g02_c01.mp4 2\n")
    write(root / "splits/testlist01.txt", "Blink/v_Blink_g01_c01.mp4\n")
    videos(root / "videos", ["Grow/v_Grow_g02_c01.mp4", "Blink/v_Blink_g01_c01.mp4"], mp4_bytes)
    assert names(load_split("ucf101", root), root) == [("videos/Grow/v_Grow_g02_c01.mp4", 1)]
    items, classes = read_ucf_split(root, 1, "test")
    assert classes == ["Blink", "Grow"] and items[0].path == root / "videos/Blink/v_Blink_g01_c01.mp4"


# ------------------------------------------------------------------------------------------
# HMDB51
# ------------------------------------------------------------------------------------------


@pytest.fixture
def hmdb(tmp_path, mp4_bytes) -> Path:
    root = tmp_path / "hmdb"
    splits = root / "testTrainMulti_7030_splits"
    # Official lines end with a blank: "<video> <id> "; ids 1 train, 2 test, 0 unused.
    write(splits / "clap_test_split1.txt",
          "#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 1 \n"
          "Clap_ya_hands_clap_f_cm_np1_fr_med_0.avi 2 \n"
          "clapping_clap_u_nm_np1_le_bad_1.avi 0 \n"
          "\n", crlf=True, bom=True)
    write(splits / "brush_hair_test_split1.txt",
          "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1\t\n"
          "Brushing_Hair_brush_hair_h_cm_np2_le_goo_0.avi 1 \n"
          "brush_my_hair_brush_hair_u_nm_np1_ri_med_1.avi 2 \n", crlf=True)
    write(splits / "brush_hair_test_split2.txt",
          "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 \n"
          "Brushing_Hair_brush_hair_h_cm_np2_le_goo_0.avi 1 \n"
          "brush_my_hair_brush_hair_u_nm_np1_ri_med_1.avi 1 \n")
    videos(root / "hmdb51_org", [
        "clap/#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi", "clap/Clap_ya_hands_clap_f_cm_np1_fr_med_0.avi",
        "clap/clapping_clap_u_nm_np1_le_bad_1.avi", "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "brush_hair/brush_my_hair_brush_hair_u_nm_np1_ri_med_1.avi"], mp4_bytes)
    return root


def test_hmdb51_official_layout_with_quirks(hmdb, caplog):
    caplog.set_level(logging.WARNING, logger="tclr_zoo")
    train = load_split("hmdb51", hmdb, split=1, subset="train")
    assert train.class_names == ["brush_hair", "clap"]
    assert names(train, hmdb) == [("hmdb51_org/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0),
                                  ("hmdb51_org/clap/#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi", 1)]
    assert [p.name for p in train.missing] == ["Brushing_Hair_brush_hair_h_cm_np2_le_goo_0.avi"]
    assert len(warnings_of(caplog)) == 1
    test = load_split("hmdb51", hmdb, split=1, subset="test")
    assert [(p.path.name, p.label) for p in test.items] == [
        ("brush_my_hair_brush_hair_u_nm_np1_ri_med_1.avi", 0), ("Clap_ya_hands_clap_f_cm_np1_fr_med_0.avi", 1)]
    # the unused entry (id 0) is in neither subset
    seen = [i.path for i in train.items + test.items] + train.missing + test.missing
    assert len(seen) == 5 and all("clapping" not in p.name for p in seen)


def test_hmdb51_errors(hmdb):
    # split 2 exists for brush_hair only: the missing file is named
    with pytest.raises(DatasetNotFoundError, match=r"clap_test_split2\.txt: split file not found"):
        load_split("hmdb51", hmdb, split=2)
    write(hmdb / "testTrainMulti_7030_splits/clap_test_split1.txt", "a.avi 1\nb.avi 3\n")
    with pytest.raises(DatasetError, match=r"clap_test_split1\.txt:2: expected '<video> <id>'"):
        load_split("hmdb51", hmdb)
    write(hmdb / "testTrainMulti_7030_splits/clap_test_split1.txt", "\r\n")
    with pytest.raises(DatasetError, match=r"clap_test_split1\.txt: lists no videos"):
        load_split("hmdb51", hmdb)
    with pytest.raises(DatasetNotFoundError, match="_test_split"):
        load_split("hmdb51", hmdb / "hmdb51_org")


def test_hmdb51_everything_in_root(tmp_path, mp4_bytes):
    write(tmp_path / "wave_test_split1.txt", "w1.avi 2\nw2.avi 1\n")
    write(tmp_path / "walk_test_split1.txt", "k1.avi 1\n")
    videos(tmp_path, ["wave/w1.avi", "wave/w2.avi", "walk/k1.avi"], mp4_bytes)
    train = load_split("hmdb", tmp_path)
    assert train.dataset == "hmdb51" and train.class_names == ["walk", "wave"]
    assert names(train, tmp_path) == [("walk/k1.avi", 0), ("wave/w2.avi", 1)]


# ------------------------------------------------------------------------------------------
# Kinetics-400
# ------------------------------------------------------------------------------------------

K400_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


@pytest.fixture
def kinetics(tmp_path, mp4_bytes) -> Path:
    root = tmp_path / "k400"
    write(root / "annotations/train.csv", K400_HEADER +
          "abseiling,--07WQ2iBlw,1,11,train,0\n"
          "air drumming,-eGnPDHAJ1s,14,24,train,0 \n"
          '"passing American football (in game)",_3dNrBsd8n8,0,10,train,0\n'
          "\n"
          "air drumming,nOlXdC0vMRQ,5,15,train,1\n", crlf=True, bom=True)
    write(root / "annotations/val.csv", K400_HEADER +
          "air drumming,zzE0ZgMr8dI,30,40,val,0\n"
          "abseiling,0wR5jVB-WPk,417,427,val,0\n", crlf=True)
    videos(root, [
        "train/abseiling/--07WQ2iBlw_000001_000011.mp4",
        "train/air drumming/-eGnPDHAJ1s_000014_000024.mkv",  # folder with spaces, .mkv
        "train/passing American football (in game)/_3dNrBsd8n8_000000_000010.webm",
        "val/air_drumming/zzE0ZgMr8dI_000030_000040.mp4",  # folder with underscores
        "val/0wR5jVB-WPk_000417_000427.mp4",  # no label folder
    ], mp4_bytes)
    return root


def test_kinetics400_layout_with_quirks(kinetics, caplog):
    caplog.set_level(logging.WARNING, logger="tclr_zoo")
    train = load_split("kinetics400", kinetics, subset="train")
    assert train.class_names == ["abseiling", "air drumming", "passing American football (in game)"]
    assert (train.split, train.subset) == (None, "train")
    assert names(train, kinetics) == [
        ("train/abseiling/--07WQ2iBlw_000001_000011.mp4", 0),
        ("train/air drumming/-eGnPDHAJ1s_000014_000024.mkv", 1),
        ("train/passing American football (in game)/_3dNrBsd8n8_000000_000010.webm", 2),
    ]
    assert [p.relative_to(kinetics).as_posix() for p in train.missing] == [
        "train/air drumming/nOlXdC0vMRQ_000005_000015.mp4"]
    [warning] = warnings_of(caplog)
    assert "1 of 4" in warning and "train.csv" in warning
    # "test" reads val; val uses the train CSV's class ids
    val = load_split("kinetics400", kinetics, subset="test")
    assert val.subset == "val" and val.class_names == train.class_names
    assert names(val, kinetics) == [("val/air_drumming/zzE0ZgMr8dI_000030_000040.mp4", 1),
                                    ("val/0wR5jVB-WPk_000417_000427.mp4", 0)]


def test_kinetics400_errors_and_csv_argument(kinetics, tmp_path):
    write(kinetics / "annotations/val.csv", K400_HEADER + "abseiling,0wR5jVB-WPk,417,427,val,0\n"
          "juggling fire,aaaaaaaaaaa,1,11,val,0\n")
    with pytest.raises(DatasetError, match=r"val\.csv:3: class 'juggling fire' is not in .*train\.csv"):
        load_split("kinetics400", kinetics, subset="val")
    bad = write(tmp_path / "bad.csv", "label,youtube_id,start,end\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:1: expected a header"):
        load_split("kinetics400", kinetics, csv_file=bad)
    write(bad, K400_HEADER + "abseiling,0wR5jVB-WPk,soon,427,val,0\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:2: time_start/time_end"):
        load_split("kinetics400", kinetics, csv_file=bad)
    write(bad, K400_HEADER + ",0wR5jVB-WPk,417,427,test,0\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:2: no label"):
        load_split("kinetics400", kinetics, csv_file=bad)
    with pytest.raises(DatasetNotFoundError, match="annotation CSV"):
        load_split("kinetics400", tmp_path)
    with pytest.raises(DatasetError, match="subset"):
        load_split("kinetics400", kinetics, subset="holdout")
    # csv_file replaces the default annotation file; class names still come from train.csv
    mine = write(tmp_path / "mine.csv", K400_HEADER + "abseiling,--07WQ2iBlw,1,11,train,0\n")
    videos_ = load_split("kinetics400", kinetics, csv_file=mine)
    assert len(videos_.items) == 1 and len(videos_.class_names) == 3


# ------------------------------------------------------------------------------------------
# Folder per class, CSV manifest
# ------------------------------------------------------------------------------------------


def test_folder_layout(tmp_path, mp4_bytes, caplog):
    root = tmp_path / "folders"
    videos(root, ["train/jump/b.mp4", "train/jump/a.avi", "train/run/c.MKV", "train/sit/d.webm",
                  "val/run/e.mp4", "val/sit/f.mov"], mp4_bytes)
    write(root / "train/jump/notes.txt", "not a video")
    write(root / "train/jump/.hidden.mp4", "x")
    write(root / "val/sit/empty.mp4", "")
    (root / "train/.cache").mkdir()
    train = load_split("folder", root, subset="train")
    assert train.class_names == ["jump", "run", "sit"] and train.split is None
    assert names(train, root) == [("train/jump/a.avi", 0), ("train/jump/b.mp4", 0), ("train/run/c.MKV", 1),
                                  ("train/sit/d.webm", 2)]
    caplog.set_level(logging.WARNING, logger="tclr_zoo")
    val = load_split("folder", root, subset="val")  # fewer classes: ids still those of train/
    assert val.class_names == train.class_names
    assert names(val, root) == [("val/run/e.mp4", 1), ("val/sit/f.mov", 2)]
    assert [p.name for p in val.missing] == ["empty.mp4"] and len(warnings_of(caplog)) == 1
    with pytest.raises(DatasetNotFoundError, match=r"test: subset folder not found \(found train/, val/\)"):
        load_split("folder", root, subset="test")
    videos(root, ["val/swim/g.mp4"], mp4_bytes)
    with pytest.raises(DatasetError, match="class 'swim' has no folder in"):
        load_split("folder", root, subset="val")
    # no subset folders: root/<class>/ and the subset is ignored
    flat = load_split("folder", root / "train", subset="test")
    assert flat.class_names == ["jump", "run", "sit"] and len(flat.items) == 4


def test_csv_manifest(tmp_path, mp4_bytes):
    root = tmp_path / "manifest"
    videos(root, ["clips/a.mp4", "clips/b,c.mp4", "clips/d.mp4"], mp4_bytes)
    elsewhere = tmp_path / "elsewhere.mp4"
    elsewhere.write_bytes(mp4_bytes)
    write(root / "train.csv", f'path,label\nclips/a.mp4,wave \n"clips/b,c.mp4",clap\n\n{elsewhere},wave\n',
          crlf=True, bom=True)
    write(root / "val.csv", "Path,Label,extra\r\nclips/d.mp4,wave,1\r\nclips/missing.mp4,clap,2\r\n")
    train = load_split("csv", root)
    assert train.class_names == ["clap", "wave"]
    assert [(i.path, i.label) for i in train.items] == [
        (root / "clips/a.mp4", 1), (root / "clips/b,c.mp4", 0), (elsewhere, 1)]
    val = load_split("csv", root, subset="val")
    assert val.class_names == ["clap", "wave"] and [i.label for i in val.items] == [1]
    assert val.missing == [root / "clips/missing.mp4"]
    # integer labels are 0-based indices; an explicit csv_file, root=None
    ints = write(tmp_path / "other" / "list.csv", f"path,label\n{elsewhere},2\n{root / 'clips/a.mp4'},0\n")
    indexed = load_split("csv", None, csv_file=ints)
    assert indexed.class_names == ["0", "1", "2"] and [i.label for i in indexed.items] == [2, 0]
    write(root / "test.csv", "path,label\nclips/a.mp4,wave\nclips/d.mp4,swim\n")
    with pytest.raises(DatasetError, match=r"test\.csv:3: class 'swim' is not in .*train\.csv"):
        load_split("csv", root, subset="test")
    write(root / "test.csv", "file,class\nclips/a.mp4,wave\n")
    with pytest.raises(DatasetError, match=r"test\.csv:1: expected a header 'path,label'"):
        load_split("csv", root, subset="test")
    write(root / "test.csv", "")
    with pytest.raises(DatasetError, match=r"test\.csv: empty file"):
        load_split("csv", root, subset="test")
    (root / "test.csv").write_bytes(b"path,label\nclips/\xe9.mp4,wave\n")
    with pytest.raises(DatasetError, match=r"test\.csv:2: not UTF-8"):
        load_split("csv", root, subset="test")


def test_unknown_dataset_and_missing_root(tmp_path):
    assert DATASETS == ("ucf101", "hmdb51", "kinetics400", "folder", "csv")
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        load_split("imagenet", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="dataset folder not found"):
        load_split("ucf101", tmp_path / "nope")
    with pytest.raises(DatasetError, match="split"):
        load_split("ucf101", tmp_path, split=0)


# ------------------------------------------------------------------------------------------
# The synthetic generator in each layout, read back
# ------------------------------------------------------------------------------------------

SYNTH = SyntheticConfig(num_classes=2, groups=3, clips_per_group=2, test_groups=1, frames=4, height=16, width=16)


@pytest.fixture(scope="module")
def synthetic_layouts(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return {layout: generate(base / layout, replace(SYNTH, layout=layout))
            for layout in ("ucf101", "hmdb51", "kinetics400")}


def test_synthetic_layouts_read_back_alike(synthetic_layouts, caplog):
    caplog.set_level(logging.WARNING, logger="tclr_zoo")
    read = {layout: (load_split(layout, root, subset="train"), load_split(layout, root, subset="test"))
            for layout, root in synthetic_layouts.items()}
    assert not warnings_of(caplog)  # every listed file is there
    for train, test in read.values():
        assert train.class_names == test.class_names == list(SYNTH.class_names)
        assert (len(train.items), len(test.items)) == (8, 4)
        assert not train.missing and not test.missing
    # same label for the same video in every layout; the files are byte-identical
    ucf_root = synthetic_layouts["ucf101"]
    for layout, root in synthetic_layouts.items():
        for subset, videos_ in zip(("train", "test"), read[layout]):
            got = sorted((i.path.relative_to(root).as_posix(), i.label) for i in videos_.items)
            want = sorted((layout_relpath(replace(SYNTH, layout=layout), name, g, c), label)
                          for label, name in enumerate(SYNTH.class_names)
                          for g in range(1, 4) for c in (1, 2) if split_role(SYNTH, 1, g, c) == subset)
            assert got == want
    name = SYNTH.class_names[1]
    reference = (ucf_root / layout_relpath(SYNTH, name, 2, 1)).read_bytes()
    for layout in ("hmdb51", "kinetics400"):
        assert (synthetic_layouts[layout]
                / layout_relpath(replace(SYNTH, layout=layout), name, 2, 1)).read_bytes() == reference
    # splits 2 and 3 agree between UCF101 and HMDB51 (rotated test groups, one unused clip per class)
    for split in (2, 3):
        ucf_lists = [load_split("ucf101", ucf_root, split=split, subset=s) for s in ("train", "test")]
        hmdb_lists = [load_split("hmdb51", synthetic_layouts["hmdb51"], split=split, subset=s)
                      for s in ("train", "test")]
        for u, h in zip(ucf_lists, hmdb_lists):
            assert [(i.path.name, i.label) for i in u.items] == [(i.path.name, i.label) for i in h.items]
        assert (len(ucf_lists[0].items), len(ucf_lists[1].items)) == (6, 4)
    hmdb_lines = (synthetic_layouts["hmdb51"] / f"testTrainMulti_7030_splits/{name}_test_split2.txt").read_text()
    assert sorted(line.split()[1] for line in hmdb_lines.splitlines()) == ["0", "1", "1", "1", "2", "2"]
