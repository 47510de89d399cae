"""The commands that run a model over video files: ``embed`` (one embedding per video, saved as
.safetensors or .npy; resumable, and split over torchrun's processes) and ``classify`` (top-k
labels per video, printed and optionally saved as JSON). The work itself is the library's
(``inference.corpus``): these parse, call it and print.
"""

from __future__ import annotations

from typing import Any

import click

from ..constants import EMBED_HEADS
from .options import (
    CLI_SPELLING,
    corpus_job_options,
    counted,
    emit_json,
    exclusive_outputs,
    json_file,
    json_option,
    load_for_inference,
    model_options,
    output_file,
    overwrite_option,
    pretrained_weights,
    refuse_existing,
    report_skipped,
    top_k_option,
)


@click.command()
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              callback=output_file(".safetensors", ".npy"),
              help="FILE.safetensors (embeddings + metadata) or FILE.npy (+ FILE.json with paths and model id).")
@click.option("--head", type=click.Choice(EMBED_HEADS), default="retrieval",
              show_default=True, help="retrieval: TCLR's temporal feature (kNN protocol); backbone: pooled "
                                      "features; projection: the contrastive head.")
@overwrite_option("Replace an existing --out (and the .json beside a .npy), discarding the units of an "
                  "interrupted run.")
@corpus_job_options
@model_options
def embed(model: str, videos: tuple[str, ...], out_file: str, head: str, overwrite: bool, resume: bool,
          shard_videos: int, random_init: bool, backend: str, device: str | None, batch_size: int, workers: int | None,
          precision: str, no_progress: bool, skip_bad: bool, engine: str, ray: Any) -> None:
    """Embed VIDEOS (files, or folders searched recursively) with MODEL, one row per video.

    Each video is cut into back-to-back clips (the model's frames and stride), embedded, and the
    clip embeddings are averaged (and re-normalised for retrieval/projection). MODEL: a saved model
    folder, local-dir:PATH, a training checkpoint (.pt), hf-hub:ORG/REPO[@REV], a published arch.tag,
    or an architecture name with --random-init.

    The rows are saved every --shard-videos videos beside --out, which is written once, at the
    end: an interrupted run continues with --resume. Under torchrun (torchrun --nproc_per_node N
    -m tclr_zoo.cli embed ...) each process embeds its share and rank 0 writes the one --out a
    single process would; see the README, "Embedding on many GPUs". From Python:
    tclr_zoo.inference.corpus.embed_corpus.

    \b
    Example:
      tclr-zoo embed r3d_18.tclr_ucf101 videos/ --out videos.safetensors --skip-bad
      tclr-zoo embed r3d_18.tclr_ucf101 videos/ --out videos.safetensors --skip-bad --resume
    """
    from ..data.layouts import find_videos
    from ..inference.corpus import embed_corpus

    corpus = embed_corpus(model, find_videos(videos), head=head, out=out_file, resume=resume, overwrite=overwrite,
                          unit_videos=shard_videos, skip_bad=skip_bad, batch_size=batch_size, workers=workers,
                          progress=not no_progress, backend=backend, device=device, precision=precision,
                          log=lambda line: click.echo(line, err=True), spelling=CLI_SPELLING,
                          pretrained=pretrained_weights(random_init), engine=engine, ray=ray)
    if corpus is None:  # another torchrun process: rank 0 reports
        return
    from pathlib import Path

    report_skipped(corpus.skipped)
    written = [out_file, *([str(Path(out_file).with_suffix(".json"))] if out_file.lower().endswith(".npy") else [])]
    again = f"; {counted(corpus.resumed, 'video')} from the interrupted run" if corpus.resumed else ""
    click.echo(f"embedded {counted(len(corpus), 'video')} ({len(corpus.skipped)} skipped) -> {', '.join(written)} "
               f"[{corpus.embeddings.shape[1]}-d, head {head}]{again}")


@click.command()
@click.argument("model")
@click.argument("videos", nargs=-1, required=True)
@top_k_option(default=5, help="Labels per video.")
@json_option("The model, each video's top labels and the skipped videos")
@overwrite_option("Replace an existing --json file.")
@model_options
def classify(model: str, videos: tuple[str, ...], top_k: int, json_out: str | None, overwrite: bool,
             random_init: bool, backend: str, device: str | None, batch_size: int, workers: int | None, precision: str,
             no_progress: bool, skip_bad: bool) -> None:
    """Classify VIDEOS with MODEL (a model with a classifier: tclr-zoo eval --protocol linear|finetune --save).

    Prints the top-k labels with probabilities per video (softmax averaged over its clips).

    \b
    Example:
      tclr-zoo classify runs/ucf101-finetuned/model clip.mp4 more-clips/ -k 3 --json top.json
    """
    from ..data.layouts import find_videos
    from ..inference.corpus import classify_corpus

    with exclusive_outputs(json_file(json_out)):  # one writer per output, for the whole run
        refuse_existing(json_file(json_out), overwrite=overwrite)
        paths = find_videos(videos)
        loaded = load_for_inference(model, backend, device, precision, random_init)
        result = classify_corpus(loaded, paths, top_k=top_k, batch_size=batch_size, skip_bad=skip_bad,
                                 progress=not no_progress, workers=workers)
        if json_out != "-":
            for path, top in zip(result.paths, result.top):
                click.echo(f"{path}: " + ", ".join(f"{label} {p:.3f}" for label, p in top))
        report_skipped(result.skipped)
        emit_json(json_out, _classify_payload(loaded, result))


def _classify_payload(loaded, result) -> dict:
    """What ``classify --json`` writes: the model, the skipped videos and each video's top labels."""
    return {"model_id": loaded.model_id, "revision": loaded.revision,
            "failed": [item.to_record() for item in result.skipped],
            "results": [{"path": p, "top": [{"label": lb, "probability": pr} for lb, pr in top]}
                        for p, top in zip(result.paths, result.top)]}


__all__ = ["classify", "embed"]
