"""The ``index`` command group: ``index build`` embeds videos with a model into a nearest-neighbour
index folder (resumable, and split over torchrun's processes: ``retrieval.build.build_index``),
``index search`` prints the neighbours of a video or of a row already in the index (optionally as
JSON and a contact sheet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..constants import EMBED_HEADS
from .errors import exit_with_error, user_errors_exit_2
from .options import (
    CLI_SPELLING,
    checked_device,
    corpus_job_options,
    counted,
    emit_json,
    exclusive_outputs,
    json_file,
    json_option,
    model_options,
    need_faiss,
    output_file,
    overwrite_option,
    pretrained_weights,
    random_init_option,
    refuse_existing,
    report_skipped,
    top_k_option,
)

if TYPE_CHECKING:  # torch-free at run time: the library is imported inside the commands
    from ..retrieval.index import VideoIndex
    from ..retrieval.types import SearchHit


@click.group()
def index() -> None:
    """Build and search a nearest-neighbour index of video embeddings.

    \b
    Example:
      tclr-zoo index build r3d_18.tclr_ucf101 videos/ --out videos-index --skip-bad
      tclr-zoo index search videos-index query.mp4 -k 5
    """


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
@click.option("--overwrite", is_flag=True, help="Replace an existing index folder (and discard the units of an "
                                                "interrupted build); a folder that is not an index is never replaced.")
@corpus_job_options
@click.option("--save-every", type=float, default=None, hidden=True)  # before units: seconds between saves
@model_options
def index_build(model: str, videos: tuple[str, ...], out_dir: str, head: str, windows: bool, dtype: str,
                approximate: bool, overwrite: bool, resume: bool, shard_videos: int, save_every: float | None,
                random_init: bool, backend: str, device: str | None, batch_size: int, workers: int | None,
                precision: str, no_progress: bool, skip_bad: bool, engine: str, ray: Any) -> None:
    """Embed VIDEOS (files, or folders searched recursively) with MODEL and save an index to --out.

    MODEL: any model name (a saved folder, local-dir:PATH, a .pt checkpoint, hf-hub:ORG/REPO[@REV], a
    published arch.tag, an architecture with --random-init). The index records the model's identity
    (its weights and preprocessing) and refuses embeddings of another model; the same model from a
    moved or copied folder is accepted.
    The rows are saved every --shard-videos videos beside --out, so an interrupted build continues
    with --resume; --out itself is written once, atomically, at the end. One build at a time
    writes an index: a second one into the same --out is refused at once (exit 2).

    Under torchrun (torchrun --nproc_per_node N -m tclr_zoo.cli index build ...) each process embeds
    its share and rank 0 writes the index a single process would; see the README, "Embedding on
    many GPUs". From Python: tclr_zoo.retrieval.build.build_index.

    \b
    Example:
      tclr-zoo index build r3d_18.tclr_ucf101 videos/ --out videos-index --windows --skip-bad
      tclr-zoo index build r3d_18.tclr_ucf101 videos/ --out videos-index --windows --skip-bad --resume
    """
    from ..data.layouts import find_videos
    from ..retrieval.build import build_index

    if approximate:
        need_faiss()
    if save_every is not None:
        click.echo("tclr-zoo: note: --save-every is no longer used: a build saves its rows every --shard-videos "
                   "videos", err=True)
    paths = find_videos(videos)
    built = build_index(model, paths, out_dir, head=head, windows=windows, dtype=dtype, approximate=approximate,
                        resume=resume, overwrite=overwrite, unit_videos=shard_videos, skip_bad=skip_bad,
                        batch_size=batch_size, workers=workers, progress=not no_progress, backend=backend,
                        device=device, precision=precision, log=lambda line: click.echo(line, err=True),
                        spelling=CLI_SPELLING, pretrained=pretrained_weights(random_init), engine=engine, ray=ray)
    if built is None:  # another torchrun process: rank 0 reports
        return
    found, resumed = built
    report_skipped(found.skipped)
    videos_done = counted(len(paths) - len(found.skipped), "video")
    rows = f"{counted(len(found), 'window')} of {videos_done}" if windows else videos_done
    again = f"; {counted(resumed, 'video')} from the interrupted build" if resumed else ""
    click.echo(f"indexed {rows} ({len(found.skipped)} skipped) with {found.model_id} -> {out_dir}{again}")


@index.command("search")
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.argument("query")
@top_k_option(default=10, help="Neighbours to return.")
@click.option("--model", default=None,
              help="Model to embed QUERY with [default: the one recorded in the index]; it must be the model the "
                   "index was built with (its folder may have moved).")
@random_init_option
@click.option("--contact-sheet", "sheet", type=click.Path(dir_okay=False), callback=output_file(".png"),
              help="Write a PNG of the query's and the neighbours' middle frames here.")
@json_option("The hits")
@overwrite_option("Replace existing --contact-sheet and --json files.")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Backend that embeds QUERY.")
@click.option("--device", default=None, callback=checked_device,
              help="cpu, cuda, cuda:N [default: a GPU when present].")
@user_errors_exit_2
def index_search(index_dir: str, query: str, top_k: int, model: str | None, random_init: bool, sheet: str | None,
                 json_out: str | None, overwrite: bool, backend: str, device: str | None) -> None:
    """Print the K nearest neighbours of QUERY in the index at INDEX_DIR.

    QUERY is a video file (embedded with the index's model, or --model) or the id of a row already
    in the index. A hit whose video file is no longer where it was indexed is marked [missing]
    ("missing": true in --json). Searching never waits for a build writing the same index.

    \b
    Example:
      tclr-zoo index search videos-index query.mp4 -k 5 --contact-sheet hits.png
      tclr-zoo index search videos-index videos/a.mp4 --json - | jq '.[0].score'
    """
    import dataclasses

    from ..retrieval.index import VideoIndex
    from ..retrieval.sheets import contact_sheet

    if random_init and model is None:
        raise click.UsageError("--random-init needs --model ARCH (the architecture the index was built with)")

    with exclusive_outputs(sheet, json_file(json_out)):  # the outputs' writer locks; the index is only read
        refuse_existing(sheet, json_file(json_out), overwrite=overwrite)
        found = VideoIndex.load(index_dir)
        hits, query_path = _neighbours(found, index_dir, query, top_k, model=model, backend=backend, device=device,
                                       pretrained=pretrained_weights(random_init))
        if json_out != "-":
            _print_hits(hits)
        emit_json(json_out, [dataclasses.asdict(hit) for hit in hits])
        if sheet:
            contact_sheet(query_path, hits, sheet)
            click.echo(f"wrote {sheet}", err=json_out == "-")


def _neighbours(found: VideoIndex, index_dir: str, query: str, k: int, *, model: str | None, backend: str,
                device: str | None, pretrained: bool = True) -> tuple[list[SearchHit], str]:
    """The K hits of QUERY (a video file, embedded, or a row id of the index) and the video it names."""
    from pathlib import Path

    if Path(query).is_file():
        from ..retrieval.build import index_model

        try:
            embedder = index_model(found, model, backend, device, pretrained=pretrained)
            return found.search(query, k, model=embedder)[0], query
        except ValueError as err:  # e.g. --model is not the model the index was built with
            exit_with_error(err)
    if query in found:
        row = found.row(query)
        return found.search(found.embeddings[row].float(), k)[0], found.paths[row]
    raise FileNotFoundError(f"{query}: neither a video file nor an id in {index_dir}")


def _print_hits(hits: list[SearchHit]) -> None:
    """One line per hit: rank, score, id, seconds of a window, [missing] when its file is gone."""
    for rank, hit in enumerate(hits, 1):
        where = f" [{hit.start:.2f}-{hit.end:.2f} s]" if hit.start is not None else ""
        gone = f"  [missing: no file at {hit.path}]" if hit.missing else ""
        click.echo(f"{rank:3d}  {hit.score:.4f}  {hit.id}{where}{gone}")


__all__ = ["index", "index_build", "index_search"]
