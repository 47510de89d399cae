"""The commands about models as named, published things: ``push`` and ``download`` (the Hugging
Face Hub), ``list`` (architectures, published weights, bundled recipes) and ``info`` (describe a
model without running it).
"""

from __future__ import annotations

import click

from ..constants import HF_PREFIX
from .errors import user_errors_exit_2
from .options import (
    emit_json,
    exclusive_outputs,
    json_file,
    json_option,
    overwrite_option,
    pretrained_weights,
    random_init_option,
    refuse_existing,
)


@click.command()
@click.argument("model")
@click.argument("repo_id")
@click.option("--revision", default=None, help="Branch to commit to [default: main].")
@click.option("--message", default=None, help="Commit message.")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@user_errors_exit_2
def push(model: str, repo_id: str, revision: str | None, message: str | None, private: bool) -> None:
    """Upload MODEL (a saved model or export folder) to the Hub repository REPO_ID (ORG/NAME).

    Uploads config.json, model.safetensors, the model card and, when present, the onnx/ folder.
    Authenticate with `hf auth login` or HF_TOKEN; HF_ENDPOINT selects another Hub.

    \b
    Example:
      tclr-zoo push runs/demo/model my-org/tclr-demo --private
    """
    from ..inference.model import load_model

    loaded = load_model(model)
    url = loaded.push_to_hub(repo_id, revision=revision, commit_message=message, private=private)
    click.echo(f"pushed {model} -> {url}")


@click.command()
@click.argument("model")
@click.option("--revision", default=None, help="Branch, tag or commit sha (or write hf-hub:ORG/REPO@REV).")
@user_errors_exit_2
def download(model: str, revision: str | None) -> None:
    """Download MODEL (hf-hub:ORG/REPO[@REV] or a published arch.tag name) into the Hub cache.

    Fetches config, weights, card and the exported onnx/ folder, so that machines without network
    can load the model with HF_HUB_OFFLINE=1 after the cache (HF_HOME or HF_HUB_CACHE) is copied.

    \b
    Example:
      tclr-zoo download hf-hub:my-org/tclr-demo@main
    """
    from ..hub.client import download as hub_download
    from ..models.pretrained import published_weights

    repo = model[len(HF_PREFIX):] if model.startswith(HF_PREFIX) else published_weights(model).repo_id
    repo, _, pinned = repo.partition("@")
    folder, commit = hub_download(repo, revision or pinned or None, progress=True)
    click.echo(f"{HF_PREFIX}{repo}@{commit} cached in {folder}")


@click.command("list")
@click.argument("pattern", default="*")
@click.option("--recipes", is_flag=True, help="List the bundled recipes instead of architectures.")
@click.option("--pretrained", is_flag=True, help="List the published weights (arch.tag names and Hub repos).")
@user_errors_exit_2
def list_cmd(pattern: str, recipes: bool, pretrained: bool) -> None:
    """List architectures (matching a shell PATTERN, e.g. 'r3d_*'), published weights or bundled recipes.

    \b
    Example:
      tclr-zoo list 'r3d_*'
      tclr-zoo list --pretrained
    """
    if recipes:
        _list_recipes()
    elif pretrained:
        _list_pretrained(pattern)
    else:
        _list_architectures(pattern)


def _list_recipes() -> None:
    from ..train.config import bundled_recipes

    for kind, command in (("pretrain", "tclr-zoo pretrain"), ("downstream", "tclr-zoo finetune")):
        for name in bundled_recipes(kind):
            click.echo(f"{name:26s} {command}")


_NOT_PUBLISHED_HELP = (
    "\nNot published yet: these repositories do not exist on the Hub, so loading the names fails. "
    "To fill one, download the authors' checkpoint (github.com/DAVEISHAN/TCLR), then\n"
    "  tclr-zoo convert CHECKPOINT.pth converted/ --arch r3d_18\n"
    "  tclr-zoo push converted/ ORG/tclr-r3d18-ucf101\n"
    "and set TCLR_ZOO_HUB_ORG=ORG to load the names from your organisation.")


def _list_pretrained(pattern: str) -> None:
    from ..models.pretrained import get_pretrained, list_pretrained

    names = list_pretrained(pattern if "." in pattern or pattern == "*" else f"{pattern}.*")
    for name in names:
        spec = get_pretrained(name)
        state = "" if spec.published else "  [not published yet]"
        click.echo(f"{name:24s} {HF_PREFIX}{spec.repo_id:32s} {spec.description}{state}")
    if any(not get_pretrained(name).published for name in names):
        click.echo(_NOT_PUBLISHED_HELP)
    if not names:
        raise click.UsageError(f"no published weights match {pattern!r}")


def _list_architectures(pattern: str) -> None:
    from ..models.registry import get_arch, list_models

    names = list_models(pattern)
    if not names:
        raise click.UsageError(f"no architecture matches {pattern!r}; architectures: {', '.join(list_models())}")
    for name in names:
        click.echo(f"{name:18s} {get_arch(name).description}")


@click.command()
@click.argument("model")
@json_option("The whole config.json")
@overwrite_option("Replace an existing --json file.")
@random_init_option
@user_errors_exit_2
def info(model: str, json_out: str | None, overwrite: bool, random_init: bool) -> None:
    """Describe MODEL without running it: architecture, embeddings, preprocessing, export, and the
    measured results with the protocol settings of each.

    MODEL: a saved model folder, local-dir:PATH, a pretraining checkpoint (.pt), hf-hub:ORG/REPO[@REV],
    a published arch.tag, or an architecture name with --random-init.

    \b
    Example:
      tclr-zoo info runs/demo/model --json - | jq .preprocessing
      tclr-zoo info r3d_18 --random-init
    """
    from ..inference.info import describe, model_summary

    with exclusive_outputs(json_file(json_out)):
        refuse_existing(json_file(json_out), overwrite=overwrite)
        config, source = describe(model, pretrained=pretrained_weights(random_init))
        if json_out != "-":
            click.echo(model_summary(config, source))
        emit_json(json_out, config)


__all__ = ["download", "info", "list_cmd", "push"]
