"""Dataset layouts as users download them: ``load_split`` -> ``VideoList`` of ``VideoItem``.

UCF101, HMDB51 and Kinetics-400 are read from their official split files, annotation CSVs and class
folders; a folder per class and a ``path,label`` CSV are read too. A listed file that cannot serve
(absent, empty) is reported once and left out; a malformed list raises a ``DatasetError`` naming the
file and line. Nothing here decodes video: that is datasets.py's (and decode.py's) business.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..constants import DATASET_LAYOUTS


@dataclass(frozen=True)
class VideoItem:
    path: Path
    label: int  # 0-based



# --------------------------------------------------------------------------------------------
# Dataset layouts: split files and folders as users download them
# --------------------------------------------------------------------------------------------

DATASETS = DATASET_LAYOUTS
_ALIASES = {"ucf": "ucf101", "ucf-101": "ucf101", "hmdb": "hmdb51", "hmdb-51": "hmdb51",
            "kinetics": "kinetics400", "kinetics-400": "kinetics400", "k400": "kinetics400"}

#: Endings of the files the ``folder`` reader takes as videos.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv")
_KINETICS_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi")  # preference order when several exist


def expand_video_folders(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Files as given (any extension, even missing: the decoder then names the problem), folders
    replaced by the video files under them, searched recursively and sorted (hidden files skipped).
    A folder without any video file is an error naming it."""
    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            found.append(os.fspath(item))
            continue
        videos = sorted(str(p) for p in path.rglob("*")
                        if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file() and not p.name.startswith("."))
        if not videos:
            raise FileNotFoundError(f"{path}: no video files in this folder (looked for {', '.join(VIDEO_EXTENSIONS)})")
        found.extend(videos)
    return found


def find_videos(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """:func:`expand_video_folders` for a command line: a name that is neither a file nor a folder (nor
    a broken or looping link, which the decoder reports) is an error right away."""
    for item in inputs:
        path = Path(item)
        if not (path.exists() or path.is_symlink()):
            raise FileNotFoundError(f"{path}: no such file or folder")
    found = expand_video_folders(inputs)
    if not found:
        raise FileNotFoundError("no videos given")
    return found

_UCF_SPLIT_DIRS = ("ucfTrainTestlist", "splits", ".")
_UCF_VIDEO_DIRS = ("UCF-101", "UCF101", "videos", ".")
_UCF_LINE_RE = re.compile(r"^(?P<path>.+?)(?:\s+-?\d+)?$")  # "Class/v_Class_g08_c01.avi[ <label>]"
_UCF_NAME_RE = re.compile(r"^v_(?P<cls>.+)_g\d+_c\d+\.\w+$")
_HMDB_SPLIT_DIRS = ("testTrainMulti_7030_splits", "test_train_splits/testTrainMulti_7030_splits", "splits", ".")
_HMDB_VIDEO_DIRS = ("hmdb51_org", "hmdb51", "videos", ".")
_HMDB_SPLIT_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")
_KINETICS_SUBSETS = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "val"}
_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")

_log = logging.getLogger("tclr_zoo")


class DatasetError(ValueError):
    """A dataset folder or list that cannot be used as asked; the message names the file (and line)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A folder or list file the layout needs is absent (also a ``FileNotFoundError``)."""


@dataclass
class VideoList:
    """The videos of one subset of one split (label ``i`` is ``class_names[i]``, 0-based).

    ``missing`` holds the listed files that are absent, not regular files, empty or unreadable
    (filled by ``load_split(check=True)``); they are not in ``items``.
    """

    items: list[VideoItem]
    class_names: list[str]
    dataset: str
    split: int | None
    subset: str
    missing: list[Path] = field(default_factory=list)


def load_split(
    dataset: str,
    root: str | os.PathLike | None,
    *,
    split: int = 1,
    subset: str = "train",
    check: bool = True,
    csv_file: str | os.PathLike | None = None,
) -> VideoList:
    """The videos of ``subset`` of ``split`` of a dataset laid out as it is downloaded.

    ``dataset`` is one of :data:`DATASETS`:

    * ``ucf101``: ``root/UCF-101/<Class>/*.avi`` and ``root/ucfTrainTestlist/`` (``classInd.txt``
      "1 ApplyEyeMakeup", ``trainlist0N.txt`` "Class/v_Class_gXX_cYY.avi 1", ``testlist0N.txt``);
      also ``videos/`` + ``splits/`` or everything in ``root``. Splits 1-3, subsets train/test.
      The label comes from the class folder of each line, looked up in ``classInd.txt``.
    * ``hmdb51``: ``<videos>/<class>/<name>.avi`` (``<videos>``: ``hmdb51_org``, ``hmdb51``,
      ``videos`` or ``root``) and ``<splits>/<class>_test_split<N>.txt`` (``<splits>``:
      ``testTrainMulti_7030_splits``, ``splits`` or ``root``) with lines ``<name>.avi <id>``:
      1 = train, 2 = test, 0 = unused in that split. Class names: the sorted classes of the split
      files (all splits, so labels agree between splits).
    * ``kinetics400``: annotation CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``
      (``csv_file``, else ``root/annotations/<subset>.csv`` or ``root/<subset>.csv``) and videos
      ``root/<subset>/<label>/<youtube_id>_<start:06d>_<end:06d>.<mp4|mkv|webm|avi>`` (the label
      folder with spaces or with underscores, or no label folder). Subsets ``train`` and ``val``;
      ``test`` reads ``val``: the Kinetics-400 test labels were withheld, so evaluation is
      reported on val (``VideoList.subset`` then says ``"val"``). Class names: the sorted labels
      of the train CSV when present (train and val share label ids), else of the given CSV.
    * ``folder``: ``root/<subset>/<class>/<video>`` when ``root/<subset>`` exists, else
      ``root/<class>/<video>`` (``subset`` then ignored). Class names: the sorted class folders
      (of ``root/train`` when it exists, so every subset shares label ids).
    * ``csv``: a manifest with a header ``path,label`` (``csv_file``, else ``root/<subset>.csv``);
      paths relative to the CSV's folder unless absolute. Labels are class names, or, when every
      label of the file is a non-negative integer, 0-based class indices (class names "0", "1"...).
      Class names: the sorted labels of a ``train.csv`` beside the CSV when present, else of the CSV.

    List files may have Windows line endings, a UTF-8 BOM, blank lines and trailing blanks.
    With ``check`` each listed file must exist, be a regular, non-empty, readable file (no
    decoding): the others go to ``VideoList.missing`` with one warning on the ``tclr_zoo``
    logger; :class:`DatasetError` when none is left. A malformed line, an unknown class or a
    missing list file raise :class:`DatasetError` naming the file and line
    (:class:`DatasetNotFoundError`, also a ``FileNotFoundError``, for absent files and folders).
    """
    name = _ALIASES.get(str(dataset).lower(), str(dataset).lower())
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if root is None:
        if name != "csv" or csv_file is None:
            raise DatasetError(f"{name}: a dataset folder (root) is needed")
        root_path = Path(csv_file).expanduser().parent
    else:
        root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DatasetNotFoundError(f"{root_path}: dataset folder not found")
    if name in ("ucf101", "hmdb51") and (isinstance(split, bool) or not isinstance(split, int) or split < 1):
        raise DatasetError(f"{name}: split must be 1, 2 or 3, got {split!r}")
    if not isinstance(subset, str) or not subset or "/" in subset or "\\" in subset:
        raise DatasetError(f"{name}: subset must be a name such as 'train', got {subset!r}")
    videos, source = _READERS[name](root_path, split=split, subset=subset, csv_file=csv_file)
    if not videos.items:
        raise DatasetError(f"{source}: lists no {videos.subset} videos")
    return _check_files(videos, source) if check else videos


def read_ucf_split(root: str | os.PathLike, split: int = 1, subset: str = "train") -> tuple[list[VideoItem], list[str]]:
    """Videos and class names of a UCF101-style dataset (``classInd.txt``, ``trainlist0N.txt``...).

    ``load_split("ucf101", root, split=split, subset=subset, check=False)`` as a tuple: accepts
    the official layout (``UCF-101/`` + ``ucfTrainTestlist/``) and ``videos/`` + ``splits/``.
    """
    videos = load_split("ucf101", root, split=split, subset=subset, check=False)
    return videos.items, videos.class_names


def _check_files(videos: VideoList, source: object) -> VideoList:
    usable = [_usable(item.path) for item in videos.items]
    if all(usable):
        return videos
    good = [item for item, ok in zip(videos.items, usable) if ok]
    missing = [item.path for item, ok in zip(videos.items, usable) if not ok]
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    what = f"{len(missing)} of {len(videos.items)} videos listed by {source}"
    if not good:
        raise DatasetError(f"{what} are missing, empty or unreadable: none is left (first: {missing[0]})")
    _log.warning("%s are missing, empty or unreadable and are left out: %s%s",
                 what, ", ".join(str(p) for p in missing[:5]), more)
    return replace(videos, items=good, missing=missing)


def _usable(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0 and os.access(path, os.R_OK)


def _read_text(path: Path) -> str:
    """The text of a list file (UTF-8, BOM dropped) or a :class:`DatasetError` naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: file not found") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8-sig", errors="replace")
        line = next(i for i, ln in enumerate(text.splitlines(), 1) if "\ufffd" in ln)
        raise DatasetError(f"{path}:{line}: not UTF-8 text") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-blank lines (any line ending)."""
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if line:
            yield number, line


def _csv_rows(path: Path, columns: Sequence[str], expected: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, {column: stripped value})`` of a CSV file with a header naming ``columns``."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header: list[str] | None = None
    try:
        for row in reader:
            fields = [f.strip() for f in row]
            if not any(fields):
                continue
            if header is None:
                header = [f.lower() for f in fields]
                if any(c not in header for c in columns):
                    raise DatasetError(f"{path}:{reader.line_num}: expected a header {expected!r}, "
                                       f"got {','.join(fields)!r}")
                continue
            values = {c: fields[header.index(c)] if header.index(c) < len(fields) else "" for c in columns}
            yield reader.line_num, values
    except csv.Error as err:
        raise DatasetError(f"{path}:{reader.line_num}: {err}") from None
    if header is None:
        raise DatasetError(f"{path}: empty file (expected a header {expected!r})")


def _pick_dir(root: Path, candidates: Sequence[str], accept: Callable[[Path], bool]) -> Path | None:
    for name in candidates:
        folder = root if name == "." else root / name
        if folder.is_dir() and accept(folder):
            return folder
    return None


def _need_subset(name: str, subset: str, allowed: Sequence[str]) -> None:
    if subset not in allowed:
        raise DatasetError(f"{name}: subset must be {' or '.join(repr(s) for s in allowed)}, got {subset!r}")


def _read_ucf101(root: Path, *, split: int, subset: str, csv_file=None) -> tuple[VideoList, Path]:
    _need_subset("ucf101", subset, ("train", "test"))
    split_dir = _pick_dir(root, _UCF_SPLIT_DIRS, lambda d: (d / "classInd.txt").is_file())
    if split_dir is None:
        raise DatasetNotFoundError(
            f"{root}: no classInd.txt in {', '.join(_UCF_SPLIT_DIRS)} (expected UCF-101/ and ucfTrainTestlist/)")
    class_file = split_dir / "classInd.txt"
    class_names = _read_class_index(class_file)
    list_file = split_dir / f"{subset}list{split:02d}.txt"
    if not list_file.is_file():
        raise DatasetNotFoundError(f"{list_file}: split file not found (UCF101 has splits 1-3)")
    exact = {n: i for i, n in enumerate(class_names)}
    folded: dict[str, int] = {}
    for i, n in enumerate(class_names):
        folded.setdefault(n.casefold(), i)
    video_dir = (_pick_dir(root, _UCF_VIDEO_DIRS, lambda d: any((d / n).is_dir() for n in class_names))
                 or _pick_dir(root, _UCF_VIDEO_DIRS, lambda d: True) or root)
    items = []
    for number, line in _lines(list_file):
        rel = _UCF_LINE_RE.match(line)["path"].replace("\\", "/").removeprefix("./")
        folder, _, file_name = rel.rpartition("/")
        if folder:
            class_name = folder.split("/")[0]
        elif m := _UCF_NAME_RE.match(file_name):
            class_name = m["cls"]
        else:
            raise DatasetError(f"{list_file}:{number}: expected '<Class>/<video> [<label>]', got {line!r}")
        label = exact.get(class_name, folded.get(class_name.casefold()))
        if label is None:
            raise DatasetError(f"{list_file}:{number}: class {class_name!r} is not in {class_file}")
        path = video_dir / rel if folder else video_dir / class_names[label] / file_name
        items.append(VideoItem(path, label))
    return VideoList(items, class_names, "ucf101", split, subset), list_file


def _read_class_index(path: Path) -> list[str]:
    """Class names of ``classInd.txt`` ("<index> <Name>", indices from 1) in index order."""
    entries: dict[int, str] = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{path}:{number}: expected '<index> <ClassName>', got {line!r}")
        index, name = int(parts[0]), parts[1]
        if index in entries or name in entries.values():
            raise DatasetError(f"{path}:{number}: class index or name listed twice: {line!r}")
        entries[index] = name
    if not entries:
        raise DatasetError(f"{path}: lists no classes")
    return [entries[i] for i in sorted(entries)]


def _read_hmdb51(root: Path, *, split: int, subset: str, csv_file=None) -> tuple[VideoList, Path]:
    _need_subset("hmdb51", subset, ("train", "test"))

    def split_files(folder: Path) -> dict[str, dict[int, Path]]:
        found: dict[str, dict[int, Path]] = {}
        for entry in os.scandir(folder):
            if (m := _HMDB_SPLIT_RE.match(entry.name)) and entry.is_file():
                found.setdefault(m["cls"], {})[int(m["split"])] = Path(entry.path)
        return found

    split_dir = _pick_dir(root, _HMDB_SPLIT_DIRS, lambda d: bool(split_files(d)))
    if split_dir is None:
        raise DatasetNotFoundError(
            f"{root}: no '<class>_test_split<N>.txt' files in {', '.join(_HMDB_SPLIT_DIRS)}")
    by_class = split_files(split_dir)
    class_names = sorted(by_class)
    lacking = [c for c in class_names if split not in by_class[c]]
    if lacking:
        raise DatasetNotFoundError(f"{split_dir / f'{lacking[0]}_test_split{split}.txt'}: split file not found "
                                   f"({len(lacking)} of {len(class_names)} classes lack split {split}; "
                                   "HMDB51 has splits 1-3)")
    wanted = "1" if subset == "train" else "2"
    video_dir = _pick_dir(root, _HMDB_VIDEO_DIRS, lambda d: any((d / c).is_dir() for c in class_names)) or root
    items = []
    for label, class_name in enumerate(class_names):
        list_file = by_class[class_name][split]
        listed = False
        for number, line in _lines(list_file):
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DatasetError(
                    f"{list_file}:{number}: expected '<video> <id>' (id 1 = train, 2 = test, 0 = unused), got {line!r}")
            listed = True
            if parts[1] == wanted:
                items.append(VideoItem(video_dir / class_name / parts[0], label))
        if not listed:
            raise DatasetError(f"{list_file}: lists no videos")
    return VideoList(items, class_names, "hmdb51", split, subset), split_dir / f"*_test_split{split}.txt"


def _kinetics_rows(path: Path) -> list[tuple[int, str, str]]:
    """``(line, label, "<youtube_id>_<start:06d>_<end:06d>")`` of a Kinetics annotation CSV."""
    rows = []
    for number, row in _csv_rows(path, _KINETICS_COLUMNS, "label,youtube_id,time_start,time_end,split"):
        if not row["label"]:
            raise DatasetError(f"{path}:{number}: no label (a test CSV without labels cannot be used)")
        if not row["youtube_id"]:
            raise DatasetError(f"{path}:{number}: no youtube_id")
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise DatasetError(f"{path}:{number}: time_start/time_end must be numbers, got "
                               f"{row['time_start']!r}, {row['time_end']!r}") from None
        rows.append((number, row["label"], f"{row['youtube_id']}_{start:06d}_{end:06d}"))
    return rows


def _read_kinetics400(root: Path, *, split: int, subset: str, csv_file=None) -> tuple[VideoList, Path]:
    sub = _KINETICS_SUBSETS.get(subset)
    if sub is None:
        raise DatasetError(f"kinetics400: subset must be 'train' or 'val' ('test' reads val), got {subset!r}")

    def find_csv(name: str) -> Path | None:
        stems = ("val", "validate") if name == "val" else (name,)
        for rel in [f"annotations/{s}.csv" for s in stems] + [f"{s}.csv" for s in stems]:
            if (root / rel).is_file():
                return root / rel
        return None

    if csv_file is not None:
        csv_path = Path(csv_file).expanduser()
        if not csv_path.is_file():
            raise DatasetNotFoundError(f"{csv_path}: annotation CSV not found")
    else:
        csv_path = find_csv(sub)
        if csv_path is None:
            raise DatasetNotFoundError(f"{root}: no annotation CSV for {sub} "
                                       f"(looked for annotations/{sub}.csv, {sub}.csv)")
    rows = _kinetics_rows(csv_path)
    train_csv = find_csv("train") or (csv_path.parent / "train.csv" if (csv_path.parent / "train.csv").is_file()
                                      else None)
    if train_csv is None or train_csv.resolve() == csv_path.resolve():
        class_source, class_names = csv_path, sorted({label for _, label, _ in rows})
    else:
        class_source, class_names = train_csv, sorted({label for _, label, _ in _kinetics_rows(train_csv)})
    label_of = {n: i for i, n in enumerate(class_names)}
    video_dir = next((root / d for d in (("val", "validate") if sub == "val" else ("train",)) if (root / d).is_dir()),
                     root / sub)
    listings: dict[Path, dict[str, Path]] = {}

    def listing(folder: Path) -> dict[str, Path]:
        if folder not in listings:
            found: dict[str, Path] = {}
            if folder.is_dir():
                for entry in os.scandir(folder):
                    stem, ext = os.path.splitext(entry.name)
                    if ext.lower() in _KINETICS_EXTENSIONS:
                        rank = _KINETICS_EXTENSIONS.index(ext.lower())
                        old = found.get(stem)
                        if old is None or rank < _KINETICS_EXTENSIONS.index(old.suffix.lower()):
                            found[stem] = Path(entry.path)
            listings[folder] = found
        return listings[folder]

    items = []
    for number, label, stem in rows:
        if label not in label_of:
            raise DatasetError(f"{csv_path}:{number}: class {label!r} is not in {class_source}")
        folders = (video_dir / label, video_dir / label.replace(" ", "_"), video_dir)
        path = next((p for f in folders if (p := listing(f).get(stem)) is not None), video_dir / label / f"{stem}.mp4")
        items.append(VideoItem(path, label_of[label]))
    return VideoList(items, class_names, "kinetics400", None, sub), csv_path


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _read_folder(root: Path, *, split: int, subset: str, csv_file=None) -> tuple[VideoList, Path]:
    base = root / subset
    if not base.is_dir():
        present = [n for n in ("train", "val", "test", "validation") if (root / n).is_dir()]
        if present:
            raise DatasetNotFoundError(f"{base}: subset folder not found (found {', '.join(n + '/' for n in present)})")
        base = root
    reference = root / "train" if base != root and (root / "train").is_dir() else base
    class_names = _class_folders(reference)
    if not class_names:
        raise DatasetError(f"{reference}: no class folders (expected <class>/<video> inside)")
    label_of = {n: i for i, n in enumerate(class_names)}
    items = []
    for class_name in _class_folders(base):
        if class_name not in label_of:
            raise DatasetError(f"{base / class_name}: class {class_name!r} has no folder in {reference}")
        for entry in sorted(os.scandir(base / class_name), key=lambda e: e.name):
            if os.path.splitext(entry.name)[1].lower() in VIDEO_EXTENSIONS and not entry.name.startswith("."):
                items.append(VideoItem(Path(entry.path), label_of[class_name]))
    return VideoList(items, class_names, "folder", None, subset), base


def _manifest_rows(path: Path) -> list[tuple[int, str, str]]:
    rows = []
    for number, row in _csv_rows(path, ("path", "label"), "path,label"):
        if not row["path"] or not row["label"]:
            raise DatasetError(f"{path}:{number}: expected '<path>,<label>', got an empty field")
        rows.append((number, row["path"], row["label"]))
    return rows


def _is_index(label: str) -> bool:
    return label.isascii() and label.isdigit()


def _read_csv(root: Path, *, split: int, subset: str, csv_file=None) -> tuple[VideoList, Path]:
    path = Path(csv_file).expanduser() if csv_file is not None else root / f"{subset}.csv"
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: manifest CSV not found")
    rows = _manifest_rows(path)
    indices = all(_is_index(label) for _, _, label in rows)
    train_csv = path.parent / "train.csv"
    reference, reference_rows = path, rows
    if train_csv.is_file() and train_csv.resolve() != path.resolve():
        reference, reference_rows = train_csv, _manifest_rows(train_csv)
        if all(_is_index(label) for _, _, label in reference_rows) != indices:
            reference, reference_rows = path, rows
    if indices:
        count = max(int(label) for _, _, label in rows + reference_rows) + 1
        class_names = [str(i) for i in range(count)]
    else:
        class_names = sorted({label for _, _, label in reference_rows})
    label_of = {n: i for i, n in enumerate(class_names)}
    items = []
    for number, video, label in rows:
        if not indices and label not in label_of:
            raise DatasetError(f"{path}:{number}: class {label!r} is not in {reference}")
        video_path = Path(video).expanduser()
        if not video_path.is_absolute():
            video_path = path.parent / video_path
        items.append(VideoItem(video_path, int(label) if indices else label_of[label]))
    return VideoList(items, class_names, "csv", None, subset), path


_READERS: dict[str, Callable[..., tuple[VideoList, Path]]] = {
    "ucf101": _read_ucf101, "hmdb51": _read_hmdb51, "kinetics400": _read_kinetics400,
    "folder": _read_folder, "csv": _read_csv,
}


__all__ = ["DATASETS", "DatasetError", "DatasetNotFoundError", "VIDEO_EXTENSIONS", "VideoItem", "VideoList",
           "expand_video_folders", "find_videos", "load_split", "read_ucf_split"]
