"""The ``index`` command group: ``index build`` embeds videos with a model into a nearest-neighbour
index folder (resumable after an interruption), ``index search`` prints the neighbours of a video
or of a row already in the index (optionally as JSON and a contact sheet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..constants import EMBED_HEADS
from .errors import exit_with_error, user_errors_exit_2
from .options import (OVERWRITE_OUTPUTS, checked_device, load_for_inference, model_options, output_file,
                      refuse_existing, report_skipped)
from .torchrun import SHARD_VIDEOS_OPTION

if TYPE_CHECKING:  # torch-free at run time: the library is imported inside the commands
    from pathlib import Path

    from ..retrieval.index import VideoIndex
    from ..retrieval.types import SearchHit


@click.group()
def index() -> None:
    """Build and search a nearest-neighbour index of video embeddings."""


@index.command("build")
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Index folder to write (embeddings.safetensors + manifest.json).")
@click.option("--head", type=click.Choice(EMBED_HEADS), default="retrieval",
              show_default=True, help="Which embedding to index.")
@click.option("--windows", is_flag=True, help="One row per sliding window (with start/end seconds), not per video.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage precision (float16 halves memory; scores are computed in float32).")
@click.option("--approximate", is_flag=True,
              help="Also build an HNSW graph for approximate search and save it (faiss.index; needs faiss-cpu): "
                   "`index search` and `tclr-zoo app` then load it instead of building it again.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index folder (and discard a partial build).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted build from the rows it saved (a hidden .OUT.partial folder; under "
                   "torchrun, the finished units in .OUT.shards).")
@click.option("--save-every", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Seconds between saves of the rows embedded so far (what --resume continues from; under "
                   "torchrun each unit is saved when it is done).")
@SHARD_VIDEOS_OPTION
@model_options
def index_build(model: str, videos: tuple[str, ...], out_dir: str, head: str, windows: bool, dtype: str,
                approximate: bool, overwrite: bool, resume: bool, save_every: float, shard_videos: int, backend: str,
                device: str | None, batch_size: int, workers: int | None, precision: str, no_progress: bool,
                skip_bad: bool) -> None:
    """Embed VIDEOS (files, or folders searched recursively) with MODEL and save an index to --out.

    The index records the model id and revision and refuses to mix in embeddings of another model.
    The rows embedded so far are saved beside --out every --save-every seconds, so an interrupted
    build continues with --resume; --out itself is written once, atomically, at the end.

    Under torchrun (torchrun --nproc_per_node N -m tclr_zoo.cli index build ...) each process embeds
    its share and rank 0 writes the index a single process would; see the README, "Embedding on
    many GPUs".
    """
    import shutil

    from ..data.layouts import find_videos
    from ..retrieval.build import build_index_resumable
    from .torchrun import ShardedRun, check_shard_folder, under_torchrun

    if approximate:
        _need_faiss()
    if under_torchrun():
        refuse_existing(out_dir, overwrite=overwrite, kind="folder")
        check_shard_folder(out_dir, resume=resume, overwrite=overwrite)
        run = ShardedRun("index build", out_dir, head, windows, resume, overwrite, shard_videos)
        _build_sharded(model, find_videos(videos), run, dtype, approximate, backend=backend, device=device,
                       precision=precision, batch_size=batch_size, workers=workers, progress=not no_progress,
                       skip_bad=skip_bad)
        return
    partial = _check_build_target(out_dir, overwrite=overwrite, resume=resume)
    paths = find_videos(videos)
    loaded = load_for_inference(model, backend, device, precision)
    built, resumed = build_index_resumable(loaded, paths, out_dir, resume=resume, save_every=save_every, head=head,
                                           batch_size=batch_size, progress=not no_progress, skip_bad=skip_bad,
                                           windows=windows, dtype=dtype, workers=workers, approximate=approximate)
    message = _save_built(built, len(paths), loaded, out_dir, windows, resumed)
    shutil.rmtree(partial, ignore_errors=True)  # only once --out holds every row
    click.echo(message)


def _need_faiss() -> None:
    """--approximate without FAISS: a usage error before any work, not an ImportError after it."""
    from ..retrieval.search import import_faiss

    try:
        import_faiss()
    except ImportError as err:
        raise click.UsageError(f"--approximate: {err}") from None


def _save_built(built: VideoIndex, videos: int, loaded, out_dir: str, windows: bool, resumed: int = 0) -> str:
    """Save the index to --out, list the skipped videos; returns the closing line."""
    built.save(out_dir)
    report_skipped([{"path": p, "reason": r} for p, r in built.skipped])
    again = f", {resumed} of them from the interrupted build" if resumed else ""
    videos_done = videos - len(built.skipped)
    rows = f"{len(built)} windows of {videos_done} videos" if windows else f"{videos_done} videos"
    return f"indexed {rows} ({len(built.skipped)} skipped{again}) with {loaded.model_id} -> {out_dir}"


def _build_sharded(model: str, paths: list[str], run, dtype: str, approximate: bool, **options) -> None:
    """``index build`` under torchrun: every process embeds its units, rank 0 builds and saves the index."""
    from ..retrieval.build import index_from_units
    from .torchrun import run_sharded

    def finish(loaded, units, skipped) -> str:
        built = index_from_units(units, skipped, model=loaded, head=run.head, dtype=dtype, approximate=approximate)
        return _save_built(built, len(paths), loaded, run.out, run.windows)

    message, is_main = run_sharded(model, paths, run, finish, **options)
    if is_main:
        click.echo(message)


def _check_build_target(out_dir: str, *, overwrite: bool, resume: bool) -> Path:
    """Before any work: --out may be replaced (the shared check), and rows an interrupted build left
    are neither lost nor silently reused; returns the folder of those rows."""
    from ..retrieval.build import partial_index_dir

    refuse_existing(out_dir, overwrite=overwrite, kind="folder")
    partial = partial_index_dir(out_dir)
    if partial.exists() and not (resume or overwrite):
        raise FileExistsError(f"{out_dir}: an interrupted build left its rows in {partial}; pass --resume to "
                              "continue it or --overwrite to start afresh")
    return partial


@index.command("search")
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours to return.")
@click.option("--model", default=None,
              help="Model to embed QUERY with [default: the one recorded in the index].")
@click.option("--contact-sheet", "sheet", type=click.Path(dir_okay=False), callback=output_file(".png"),
              help="Write a PNG of the query's and the neighbours' middle frames here.")
@OVERWRITE_OUTPUTS
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Backend that embeds QUERY.")
@click.option("--device", default=None, callback=checked_device,
              help="cpu, cuda, cuda:N [default: a GPU when present].")
@user_errors_exit_2
def index_search(index_dir: str, query: str, k: int, model: str | None, sheet: str | None, overwrite: bool,
                 as_json: bool, backend: str, device: str | None) -> None:
    """Print the K nearest neighbours of QUERY in the index at INDEX_DIR.

    QUERY is a video file (embedded with the index's model, or --model) or the id of a row already
    in the index.
    """
    from ..retrieval.index import VideoIndex
    from ..retrieval.sheets import contact_sheet

    refuse_existing(sheet, overwrite=overwrite)
    found = VideoIndex.load(index_dir)
    hits, query_path = _neighbours(found, index_dir, query, k, model=model, backend=backend, device=device)
    _print_hits(hits, as_json)
    if sheet:
        contact_sheet(query_path, hits, sheet)
        click.echo(f"wrote {sheet}")


def _neighbours(found: VideoIndex, index_dir: str, query: str, k: int, *, model: str | None, backend: str,
                device: str | None) -> tuple[list[SearchHit], str]:
    """The K hits of QUERY (a video file, embedded, or a row id of the index) and the video it names."""
    from pathlib import Path

    if Path(query).is_file():
        from ..retrieval.build import index_model

        try:
            return found.search(query, k, model=index_model(found, model, backend, device))[0], query
        except ValueError as err:  # e.g. --model is not the model the index was built with
            exit_with_error(err)
    if query in found:
        row = found.row(query)
        return found.search(found.embeddings[row].float(), k)[0], found.paths[row]
    raise FileNotFoundError(f"{query}: neither a video file nor an id in {index_dir}")


def _print_hits(hits: list[SearchHit], as_json: bool) -> None:
    """One line per hit (rank, score, id, seconds of a window), or the hits as a JSON list."""
    import json

    if as_json:
        click.echo(json.dumps([hit.__dict__ for hit in hits], indent=2))
        return
    for rank, hit in enumerate(hits, 1):
        where = f" [{hit.start:.2f}-{hit.end:.2f} s]" if hit.start is not None else ""
        click.echo(f"{rank:3d}  {hit.score:.4f}  {hit.id}{where}")


__all__ = ["index", "index_build", "index_search"]
