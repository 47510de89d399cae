"""The ``index`` command group: ``index build`` embeds videos with a model into a nearest-neighbour
index folder (resumable after an interruption), ``index search`` prints the neighbours of a video
or of a row already in the index (optionally as JSON and a contact sheet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..constants import EMBED_HEADS
from .errors import exit_with_error, user_errors_exit_2
from .options import (OVERWRITE_OUTPUTS, checked_device, counted, exclusive_outputs, load_for_inference, model_options,
                      output_file, refuse_existing, report_skipped)
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
@click.option("--overwrite", is_flag=True, help="Replace an existing index folder (and discard a partial build); a "
                                                "folder that is not an index is never replaced.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted build from the rows it saved (a hidden .OUT.partial folder; under "
                   "torchrun, the finished units in .OUT.shards); refused when there is nothing to continue.")
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
    build continues with --resume; --out itself is written once, atomically, at the end. One build
    at a time writes an index: a second one into the same --out is refused at once (exit 2).

    Under torchrun (torchrun --nproc_per_node N -m tclr_zoo.cli index build ...) each process embeds
    its share and rank 0 writes the index a single process would; see the README, "Embedding on
    many GPUs".
    """
    import shutil

    from ..data.layouts import find_videos
    from ..retrieval.build import build_index_resumable
    from .torchrun import ShardedRun, under_torchrun

    if approximate:
        _need_faiss()
    if under_torchrun():  # rank 0 takes --out's lock and makes the checks (torchrun.run_sharded)
        run = ShardedRun("index build", out_dir, head, windows=windows, resume=resume, overwrite=overwrite,
                         unit_videos=shard_videos)
        _build_sharded(model, find_videos(videos), run, dtype, approximate, backend=backend, device=device,
                       precision=precision, batch_size=batch_size, workers=workers, progress=not no_progress,
                       skip_bad=skip_bad)
        return
    with exclusive_outputs(out_dir):  # one writer per index, from the checks to the saved index
        partial = _check_build_target(out_dir, overwrite=overwrite, resume=resume)
        paths = find_videos(videos)
        loaded = load_for_inference(model, backend, device, precision)
        built, resumed = build_index_resumable(loaded, paths, out_dir, resume=resume, save_every=save_every,
                                               head=head, batch_size=batch_size, progress=not no_progress,
                                               skip_bad=skip_bad, windows=windows, dtype=dtype, workers=workers,
                                               approximate=approximate)
        message = _save_built(built, len(paths), loaded, out_dir, windows, overwrite, resumed)
        shutil.rmtree(partial, ignore_errors=True)  # only once --out holds every row
    click.echo(message)


def _need_faiss() -> None:
    """--approximate without FAISS: a usage error before any work, not an ImportError after it."""
    from ..retrieval.search import import_faiss

    try:
        import_faiss()
    except ImportError as err:
        raise click.UsageError(f"--approximate: {err}") from None


def _save_built(built: VideoIndex, videos: int, loaded, out_dir: str, windows: bool, overwrite: bool,
                resumed: int = 0) -> str:
    """Save the index to --out, list the skipped videos; returns the closing line."""
    built.save(out_dir, overwrite=overwrite)
    report_skipped([{"path": p, "reason": r} for p, r in built.skipped])
    again = f", {resumed} of them from the interrupted build" if resumed else ""
    videos_done = counted(videos - len(built.skipped), "video")
    rows = f"{counted(len(built), 'window')} of {videos_done}" if windows else videos_done
    return f"indexed {rows} ({len(built.skipped)} skipped{again}) with {loaded.model_id} -> {out_dir}"


def _build_sharded(model: str, paths: list[str], run, dtype: str, approximate: bool, **options) -> None:
    """``index build`` under torchrun: every process embeds its units, rank 0 builds and saves the index."""
    from pathlib import Path

    from ..retrieval.build import index_from_units
    from ..retrieval.storage import check_index_target
    from .torchrun import run_sharded

    def finish(loaded, units, skipped) -> str:
        built = index_from_units(units, skipped, model=loaded, head=run.head, dtype=dtype, approximate=approximate)
        return _save_built(built, len(paths), loaded, run.out, run.windows, run.overwrite)

    def check() -> None:
        check_index_target(Path(run.out), overwrite=run.overwrite, flag="--overwrite")

    message, is_main = run_sharded(model, paths, run, finish, check=check, **options)
    if is_main:
        click.echo(message)


def _check_build_target(out_dir: str, *, overwrite: bool, resume: bool) -> Path:
    """Before any work: --out may be replaced (a saved index, with --overwrite; never a folder of
    other files), rows an interrupted build left are neither lost nor silently reused, and --resume
    with nothing to continue says so; returns the folder of those rows."""
    from pathlib import Path

    from ..retrieval.build import nothing_to_resume, partial_index_dir
    from ..retrieval.storage import check_index_target

    check_index_target(Path(out_dir), overwrite=overwrite, flag="--overwrite")
    partial = partial_index_dir(out_dir)
    if partial.exists() and not (resume or overwrite):
        raise FileExistsError(f"{out_dir}: an interrupted build left its rows in {partial}; pass --resume to "
                              "continue it or --overwrite to start afresh")
    missing = nothing_to_resume(out_dir) if resume else None
    if missing:
        raise FileNotFoundError(missing)
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
    in the index. A hit whose video file is no longer where it was indexed is marked [missing]
    ("missing": true in --json). Searching never waits for a build writing the same index.
    """
    from ..retrieval.index import VideoIndex
    from ..retrieval.sheets import contact_sheet

    with exclusive_outputs(sheet):  # the sheet's writer lock; the index is only read
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
    """One line per hit (rank, score, id, seconds of a window, [missing] when its file is gone), or
    the hits as a JSON list."""
    import dataclasses
    import json

    if as_json:
        click.echo(json.dumps([dataclasses.asdict(hit) for hit in hits], indent=2))
        return
    for rank, hit in enumerate(hits, 1):
        where = f" [{hit.start:.2f}-{hit.end:.2f} s]" if hit.start is not None else ""
        gone = f"  [missing: no file at {hit.path}]" if hit.missing else ""
        click.echo(f"{rank:3d}  {hit.score:.4f}  {hit.id}{where}{gone}")


__all__ = ["index", "index_build", "index_search"]
