"""The training and evaluation commands: ``pretrain`` (TCLR self-supervised pretraining from a
recipe), ``finetune`` (a downstream recipe) and ``eval`` (one protocol on one dataset).

``finetune`` and ``eval`` run the same protocols (kNN retrieval, linear probe, fine-tuning) and
share their run options (:func:`protocol_run_options`) and result printing (:func:`_write_result`).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from ..constants import DATASET_LAYOUTS
from .errors import user_errors_exit_2
from .options import (
    OVERWRITE_OUTPUTS,
    checked_device,
    exclusive_outputs,
    output_file,
    pretrained_weights,
    random_init_option,
    refuse_existing,
    with_options,
    write_json,
)


@click.command()
@click.argument("recipe", required=False)
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Run folder for checkpoints, logs, the saved model and results.json [default: runs/<recipe name>].")
@click.option("--resume", is_flag=True,
              help="Continue the run in OUT from its last checkpoint (schedule, optimiser, RNG) with the recipe it "
                   "recorded, its --set overrides included; --set then changes only the keys it names.")
@click.option("--overwrite", is_flag=True,
              help="Start afresh even if OUT already holds a run (its files are replaced).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set train.epochs=3 --set data.root=/data/UCF101 (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs and CI).")
@user_errors_exit_2
def pretrain(recipe: str | None, out_dir: str | None, resume: bool, overwrite: bool, overrides: tuple[str, ...],
             no_progress: bool) -> None:
    """TCLR self-supervised pretraining from a RECIPE (a YAML file or a bundled name).

    Without RECIPE it runs the CPU demo: a small R3D trained on a generated synthetic action
    dataset for a few minutes, then kNN retrieval R@1 of the trained and of the randomly
    initialised network. Bundled recipes: see `tclr-zoo list --recipes`.

    --resume continues OUT's run with the recipe it recorded, overrides included: `tclr-zoo
    pretrain --out OUT --resume`. Only train.epochs, optim.lr, data.root, data.workers and eval.*
    may change, with --set (e.g. --set train.epochs=50). RECIPE may be left out; if given, it must
    be the run's own recipe (same name), and its file is not read again. A run stopped before its
    first checkpoint starts again from epoch 1, in place. Ctrl-C says what was kept and the
    command that goes on (exit status 130).

    \b
    Example:
      tclr-zoo pretrain                      # the CPU demo, a few minutes
      tclr-zoo pretrain tclr_r3d18_ucf101 --set data.root=/data/UCF101 --out runs/ucf101
      tclr-zoo pretrain --out runs/ucf101 --resume
    """
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    out = out_dir
    try:
        from ..train.config import ResumeRequest, load_recipe
        from ..train.pretrain import pretrain as run_pretrain

        named = load_recipe(recipe, [] if resume else list(overrides))
        out = out_dir or f"runs/{named.name}"
        # With --resume the run's recorded recipe is continued; only the keys given now may change.
        what = ResumeRequest(overrides, recipe_name=named.name if recipe else None) if resume else named
        results = run_pretrain(what, out, resume=resume, overwrite=overwrite, progress=not no_progress,
                               log=click.echo)
    except KeyboardInterrupt as stop:
        _report_interrupt(stop, _command_line(recipe, out, resume, overwrite, overrides, no_progress),
                          resume=resume, overrides=overrides, no_progress=no_progress)
        raise click.exceptions.Exit(130) from None
    if "knn_r1" in results:
        click.echo(f"R@1 trained {results['knn_r1']:.3f} vs random init {results['knn_r1_random_init']:.3f} "
                   f"({_knn_settings(results.get('knn_protocol'))})")


def _command_line(recipe: str | None, out: str | None, resume: bool, overwrite: bool, overrides: tuple[str, ...],
                  no_progress: bool) -> str:
    """This pretrain command as the user could type it again (with the run folder spelled out)."""
    args = ["tclr-zoo", "pretrain", *([recipe] if recipe else []), *(["--out", out] if out else []),
            *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else []),
            *(["--no-progress"] if no_progress else []), *[a for item in overrides for a in ("--set", item)]]
    return shlex.join(args)


def _report_interrupt(stop: KeyboardInterrupt, again: str, *, resume: bool, overrides: tuple[str, ...],
                      no_progress: bool) -> None:
    """Ctrl-C: what the run folder kept and the exact command that goes on, on stderr (rank 0 only)."""
    from ..runtime import torchrun_env

    env = torchrun_env()
    if env is not None and env["RANK"] != 0:
        return
    progress, out = getattr(stop, "progress", None), getattr(stop, "out", None)
    if progress is None:  # before the run began (loading the recipe, importing torch)
        click.echo("tclr-zoo: interrupted before the run started; nothing was written", err=True)
        click.echo(f"to start again: {again}", err=True)
        return
    click.echo(f"tclr-zoo: interrupted: {progress.kept()}", err=True)
    if progress.kept_epoch is None and not progress.restartable:
        click.echo(f"to start again: {again}", err=True)
        return
    go_on = ["tclr-zoo", "pretrain", "--out", str(out), "--resume", *(["--no-progress"] if no_progress else [])]
    if resume and not progress.saved_here:  # this resume's changes were not recorded: ask for them again
        go_on += [a for item in overrides for a in ("--set", item)]
    if progress.kept_epoch is None:
        todo = f"to start it again from epoch 1 with the recipe recorded in {Path(out) / 'recipe.yaml'}"
    else:
        todo = "to finish it" if progress.finishing else "to continue"
    click.echo(f"{todo}: {shlex.join(go_on)}", err=True)


def _knn_settings(protocol: dict | None) -> str:
    if not protocol:
        return "settings not recorded"
    from ..hub.card_metadata import record_head  # a finished run's results.json may be older: read both

    return (f"{protocol['dataset']}, split {protocol['split']}, {protocol['clips']} clips x {protocol['frames']} "
            f"frames at stride {protocol['stride']}, {record_head(protocol)} head")


def _parse_settings(items: tuple[str, ...]) -> dict:
    import yaml

    settings = {}
    for item in items:
        if "=" not in item:
            raise click.UsageError(f"--set {item!r} must look like name=value")
        key, value = item.split("=", 1)
        settings[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return settings


def _write_result(result: dict, out: str | None) -> None:
    from ..train.protocols import format_table

    click.echo(format_table(result))
    if out:
        write_json(out, result)
        click.echo(f"wrote {out}")


_PROTOCOL_RUN_OPTIONS = with_options(
    random_init_option,
    click.option("--save", "save_dir", type=click.Path(file_okay=False),
                 help="linear/finetune: save the trained model (with its classifier and class names) here."),
    OVERWRITE_OUTPUTS,
    click.option("--device", default="auto", show_default=True, callback=checked_device,
                 help="cpu, cuda, cuda:N or auto."),
    click.option("--no-progress", is_flag=True, help="No progress bars."),
)


def protocol_run_options(func):
    """The options shared by `eval` and `finetune`: --random-init, --save, --overwrite, --device,
    --no-progress; exit 2 on user errors."""
    return _PROTOCOL_RUN_OPTIONS(func)


def _run_protocol(model: str, protocol: str, dataset: str, root: str, *, split: int, overrides: dict,
                  save_dir: str | None, overwrite: bool, device: str, no_progress: bool, random_init: bool,
                  reference: dict | None = None) -> dict:
    """Run one protocol with the --random-init, --save, --overwrite, --device and --no-progress of the
    command line (``reference``: a downstream recipe's published numbers, recorded by a --save model)."""
    from ..runtime import resolve_device
    from ..train.protocols import run_protocol

    return run_protocol(model, protocol, dataset, root, split=split, overrides=overrides,
                        device=resolve_device(device, setting="--device"), progress=not no_progress, log=click.echo,
                        save_dir=save_dir, overwrite=overwrite, reference=reference,
                        pretrained=pretrained_weights(random_init))


@click.command("eval")
@click.argument("model")
@click.option("--protocol", type=click.Choice(["retrieval", "linear", "finetune"]), required=True,
              help="retrieval: kNN R@k (TCLR's nearest-neighbour protocol, README 'Evaluating an encoder'); "
                   "linear: frozen backbone + linear layer; finetune: all layers.")
@click.option("--dataset", type=click.Choice(DATASET_LAYOUTS), required=True,
              help="Layout of --root (the official one for ucf101, hmdb51, kinetics400).")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--split", default=1, show_default=True, help="Official split number (UCF101/HMDB51: 1-3).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), callback=output_file(".json"),
              help="Write the result as JSON here.")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Protocol setting, e.g. --set epochs=10 --set test_clips=10 --set head=backbone. Clip "
                   "settings left unset (frames, stride, size, crop_fraction; retrieval: clips) are the model's own.")
@protocol_run_options
def eval_cmd(model: str, protocol: str, dataset: str, root: str, split: int, out_file: str | None,
             settings: tuple[str, ...], random_init: bool, save_dir: str | None, overwrite: bool, device: str,
             no_progress: bool) -> None:
    """Evaluate MODEL on a dataset: a saved model folder, local-dir:PATH, a pretraining checkpoint
    (.pt), hf-hub:ORG/REPO[@REV], a published arch.tag, or an architecture name with --random-init
    (the baseline a pretraining must beat).

    Prints the protocol's settings and a table of the metrics and, with --out, writes them as JSON
    with the model id, the protocol's parameters, dataset, split and library versions.

    \b
    Example:
      tclr-zoo eval runs/demo/model --protocol retrieval --dataset ucf101 --root /data/UCF101 --out r.json
    """
    with exclusive_outputs(out_file, save_dir):  # one writer per output, from the checks to the results
        refuse_existing(out_file, overwrite=overwrite)
        result = _run_protocol(model, protocol, dataset, root, split=split, overrides=_parse_settings(settings),
                               save_dir=save_dir, overwrite=overwrite, device=device, no_progress=no_progress,
                               random_init=random_init)
        _write_result(result, out_file)


@click.command()
@click.argument("recipe")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), callback=output_file(".json"),
              help="Write the result as JSON here.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value: model=PATH, data.root=DIR, settings.epochs=10 (repeatable).")
@protocol_run_options
def finetune(recipe: str, out_file: str | None, overrides: tuple[str, ...], random_init: bool, save_dir: str | None,
             overwrite: bool, device: str, no_progress: bool) -> None:
    """Run a downstream RECIPE (fine-tuning, linear probe or retrieval; a YAML file or a bundled name).

    The recipe names the encoder (model: any model name, as for eval), the dataset (data: dataset,
    root, split), the protocol settings and the paper's number to compare with; see
    recipes/finetune_*.yaml.

    \b
    Example:
      tclr-zoo finetune finetune_r3d18_ucf101 --set model=runs/ucf101/model --set data.root=/data/UCF101 --save clf
    """
    from ..train.protocols import load_protocol_recipe

    with exclusive_outputs(out_file, save_dir):  # one writer per output, from the checks to the results
        refuse_existing(out_file, overwrite=overwrite)
        loaded = load_protocol_recipe(recipe, list(overrides))
        data = loaded["data"]
        result = _run_protocol(str(loaded["model"]), loaded["protocol"], data["dataset"], data["root"],
                               split=data.get("split", 1), overrides=loaded.get("settings") or {}, save_dir=save_dir,
                               overwrite=overwrite, device=device, no_progress=no_progress, random_init=random_init,
                               reference=loaded.get("reference"))
        result["recipe"], result["reference"] = loaded.get("name"), loaded.get("reference", {})
        _write_result(result, out_file)
    for key, value in result["reference"].items():
        click.echo(f"reference {key}: {value}")


__all__ = ["eval_cmd", "finetune", "pretrain", "protocol_run_options"]
