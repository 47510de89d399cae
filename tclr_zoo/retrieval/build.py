"""Building an index over a large collection as a corpus job (``inference.corpus``): resumable after
an interruption, and split over torchrun's processes -- what ``tclr-zoo index build`` runs.

The rows are embedded unit by unit into ``.OUT.shards`` beside the index folder; the index is saved
to the folder once, atomically, from the units, which are then removed. ``resume=True`` continues an
interrupted build from the units it finished, with one process or many. (``VideoIndex.build`` is
the in-memory way, for collections that take minutes.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..inference.corpus import CorpusEmbeddings, CorpusJob, run_corpus
from ..inference.model import VideoModel, load_model
from ..inference.ray_engine import RayOptions
from ..inference.shards import PYTHON_SPELLING, UNIT_VIDEOS
from .index import VideoIndex
from .storage import check_index_target


def index_model(index: VideoIndex, name: str | None, backend: str, device: str | None, *,
                pretrained: bool = True) -> VideoModel:
    """The model that embeds queries for ``index``: ``name`` (any model name; ``pretrained=False``: an
    architecture's random weights), else the one the index records."""
    if name is None:
        return index.recorded_model(backend=backend, device=device)
    return load_model(name, backend=backend, device=device, pretrained=pretrained)


def build_index(model: VideoModel | str | os.PathLike, paths: Sequence[str | os.PathLike],
                out_dir: str | os.PathLike, *, head: str = "retrieval", windows: bool = False, dtype: str = "float32",
                approximate: bool = False, resume: bool = False, overwrite: bool = False,
                unit_videos: int = UNIT_VIDEOS, skip_bad: bool = False, batch_size: int = 8,
                workers: int | None = None, progress: bool = False, backend: str = "torch", device: str | None = None,
                precision: str = "fp32", log: Callable[[str], None] | None = None,
                spelling: Mapping[str, str] = PYTHON_SPELLING, pretrained: bool = True, engine: str = "local",
                ray: RayOptions | None = None) -> tuple[VideoIndex, int] | None:
    """Embed ``paths`` with ``model`` and save the index to ``out_dir``: a resumable corpus job.

    Args:
        model: a loaded ``VideoModel``, or a name (loaded with ``backend``, ``device``, ``precision``
            on this process's device; see ``inference.corpus.embed_corpus``).
        paths: video files, and folders (searched recursively for video files).
        out_dir: the index folder; a saved index there is replaced only with ``overwrite``, a folder
            of other files never.
        head, windows, skip_bad, batch_size, workers, progress: as for ``VideoIndex.build``.
        dtype, approximate: the index's storage precision and HNSW graph (saved with it).
        resume: continue the build an interrupted call left (its units in ``.OUT.shards``).
        overwrite: replace a saved index in ``out_dir`` (and discard the units an interrupted build left).
        unit_videos: videos per unit: what an interruption can cost, per process.
        backend, device, precision, pretrained: how a ``model`` given by name is loaded (as ``load_model``
            takes them).
        log, spelling, engine, ray: as for ``embed_corpus`` (``engine="ray"``: on a Ray cluster).

    Returns:
        On rank 0 (and in a single process): the saved index (``index.skipped`` lists the videos
        left out) and how many of the videos came from an interrupted build's units; ``None`` on
        the other ranks.

    Raises:
        OutputExistsError: ``out_dir`` holds a saved index (without ``overwrite``), other files, or is a file.
        OutputInUseError: another process is writing ``out_dir``.
        FileExistsError, FileNotFoundError, ShardError, VideoDecodeError: as for ``embed_corpus``
            (units left by an interrupted build, nothing to resume, units of another job, a bad video).
        ValueError: a bad ``dtype`` (checked when the index is made, after the videos are embedded;
            their units are kept, so a resume with a good one does not embed them again).
    """
    from ..data.layouts import expand_video_folders

    target = Path(out_dir)
    job = CorpusJob("index build", head, target, (target,), windows=windows, resume=resume, overwrite=overwrite,
                    unit_videos=unit_videos, spelling=spelling)

    def check() -> None:
        check_index_target(target, overwrite=overwrite, flag=spelling["overwrite"])

    def write(loaded: VideoModel, corpus: CorpusEmbeddings) -> tuple[VideoIndex, int]:
        index = index_from_corpus(corpus, dtype=dtype, approximate=approximate)
        index.save(target, overwrite=overwrite)
        return index, corpus.resumed

    load = None if isinstance(model, VideoModel) else {"backend": backend, "device": device, "precision": precision,
                                                       "pretrained": pretrained}
    return run_corpus(model, expand_video_folders([os.fspath(p) for p in paths]), job, check=check, write=write,
                      skip_bad=skip_bad, batch_size=batch_size, workers=workers, progress=progress, load=load, log=log,
                      engine=engine, ray=ray)


def index_from_corpus(corpus: CorpusEmbeddings, *, dtype: str = "float32", approximate: bool = False) -> VideoIndex:
    """The index ``VideoIndex.build`` makes, from a corpus job's rows (in input order, added in one
    call, as ``add_videos`` adds them), with the job's model, head and skipped videos."""
    index = VideoIndex(None, dtype=dtype, model_id=corpus.model_id, revision=corpus.revision, head=corpus.head,
                       approximate=approximate, identity=corpus.identity)
    if len(corpus):
        index.add(corpus.embeddings, corpus.ids, paths=corpus.paths, starts=corpus.starts, ends=corpus.ends,
                  model_id=corpus.model_id, revision=corpus.revision, head=corpus.head, identity=corpus.identity)
    index.skipped = list(corpus.skipped)
    return index


__all__ = ["build_index", "index_from_corpus", "index_model"]
