"""The commands that run a model over video files: ``embed`` (one embedding per video, saved as
.safetensors or .npy) and ``classify`` (top-k labels per video, printed and optionally saved as
JSON). The batch work itself (chunks, --skip-bad, the output files) is in :mod:`.batch`.
"""

from __future__ import annotations

import click

from ..constants import EMBED_HEADS
from .options import (OVERWRITE_OUTPUTS, counted, exclusive_outputs, load_for_inference, model_options, output_file,
                      refuse_existing, report_skipped, write_json)
from .torchrun import SHARD_VIDEOS_OPTION


@click.command()
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              callback=output_file(".safetensors", ".npy"),
              help="FILE.safetensors (embeddings + metadata) or FILE.npy (+ FILE.json with paths and model id).")
@click.option("--head", type=click.Choice(EMBED_HEADS), default="retrieval",
              show_default=True, help="retrieval: TCLR's temporal feature (kNN protocol); backbone: pooled "
                                      "features; projection: the contrastive head.")
@OVERWRITE_OUTPUTS
@click.option("--resume", is_flag=True,
              help="Under torchrun: continue an interrupted run from the units it finished (kept in .OUT.shards).")
@SHARD_VIDEOS_OPTION
@model_options
def embed(model: str, videos: tuple[str, ...], out_file: str, head: str, overwrite: bool, resume: bool,
          shard_videos: int, backend: str, device: str | None, batch_size: int, workers: int | None, precision: str,
          no_progress: bool, skip_bad: bool) -> None:
    """Embed VIDEOS (files, or folders searched recursively) with MODEL, one row per video.

    Each video is cut into back-to-back clips (the model's frames and stride), embedded, and the
    clip embeddings are averaged (and re-normalised for retrieval/projection). MODEL: a registry
    name, hf-hub:ORG/REPO[@REV], local-dir:PATH or a saved model folder.

    Under torchrun (torchrun --nproc_per_node N -m tclr_zoo.cli embed ...) each process embeds its
    share and rank 0 writes the one --out a single process would; see the README, "Embedding on
    many GPUs".
    """
    from pathlib import Path

    from ..data.layouts import find_videos
    from .batch import embed_files, result_from_units
    from .torchrun import ShardedRun, refuse_resume_without_torchrun, run_sharded, under_torchrun

    refuse_resume_without_torchrun(resume)
    sidecar = str(Path(out_file).with_suffix(".json")) if out_file.lower().endswith(".npy") else None
    if under_torchrun():  # rank 0 takes the outputs' locks and makes the checks (torchrun.run_sharded)
        paths = find_videos(videos)
        run = ShardedRun("embed", out_file, head, resume=resume, overwrite=overwrite, unit_videos=shard_videos,
                         sidecar=sidecar)

        def finish(loaded, units, skipped) -> str:
            return _write(loaded, result_from_units(units, skipped), head, out_file)

        message, is_main = run_sharded(model, paths, run, finish,
                                       check=lambda: refuse_existing(out_file, sidecar, overwrite=overwrite),
                                       backend=backend, device=device, precision=precision, batch_size=batch_size,
                                       workers=workers, progress=not no_progress, skip_bad=skip_bad)
        if is_main:
            click.echo(message)
        return
    with exclusive_outputs(out_file, sidecar):  # one writer per output, for the whole run
        refuse_existing(out_file, sidecar, overwrite=overwrite)
        paths = find_videos(videos)
        loaded = load_for_inference(model, backend, device, precision)
        result = embed_files(loaded, paths, head=head, batch_size=batch_size, skip_bad=skip_bad,
                             progress=not no_progress, workers=workers)
        click.echo(_write(loaded, result, head, out_file))


def _write(loaded, result, head: str, out_file: str) -> str:
    """Save the embeddings file (+ sidecar), list the skipped videos; returns the closing line."""
    from .batch import output_metadata, save_embeddings

    metadata = output_metadata(loaded, head, result)
    metadata["dim"] = loaded.config["embedding_dims"][head]
    written = save_embeddings(out_file, result, metadata)
    report_skipped(result.failed)
    return (f"embedded {counted(len(result.paths), 'video')} ({len(result.failed)} skipped) -> "
            f"{', '.join(map(str, written))} [{metadata['dim']}-d, head {head}]")


@click.command()
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Labels per video.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), callback=output_file(".json"),
              help="Also write the results as JSON here.")
@OVERWRITE_OUTPUTS
@model_options
def classify(model: str, videos: tuple[str, ...], top_k: int, json_file: str | None, overwrite: bool, backend: str,
             device: str | None, batch_size: int, workers: int | None, precision: str, no_progress: bool,
             skip_bad: bool) -> None:
    """Classify VIDEOS with MODEL (a model with a classifier: tclr-zoo eval --protocol linear|finetune --save).

    Prints the top-k labels with probabilities per video (softmax averaged over its clips).
    """
    from ..data.layouts import find_videos
    from .batch import classify_files

    with exclusive_outputs(json_file):  # one writer per output, for the whole run
        refuse_existing(json_file, overwrite=overwrite)
        paths = find_videos(videos)
        loaded = load_for_inference(model, backend, device, precision)
        result = classify_files(loaded, paths, top_k=top_k, batch_size=batch_size, skip_bad=skip_bad,
                                progress=not no_progress, workers=workers)
        for path, top in zip(result.paths, result.rows):
            click.echo(f"{path}: " + ", ".join(f"{label} {p:.3f}" for label, p in top))
        report_skipped(result.failed)
        if json_file:
            write_json(json_file, _classify_payload(loaded, result))


def _classify_payload(loaded, result) -> dict:
    """What ``classify --json`` writes: the model, the skipped videos and each video's top labels."""
    return {"model_id": loaded.model_id, "revision": loaded.revision, "failed": result.failed,
            "results": [{"path": p, "top": [{"label": lb, "probability": pr} for lb, pr in top]}
                        for p, top in zip(result.paths, result.rows)]}


__all__ = ["classify", "embed"]
