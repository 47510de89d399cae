"""The ``tclr-zoo`` command group: the entry point, which only registers the commands of each family.

Thin, like every command: parse, call the library, print. The commands live in one module per
family (:mod:`.train`, :mod:`.export`, :mod:`.embed`, :mod:`.index`, :mod:`.hub`); how they fail
(exit statuses, one-line errors) is in :mod:`.errors`, what they share in :mod:`.options`.
None of them imports torch before a command runs, so ``tclr-zoo --help`` stays fast.
"""

from __future__ import annotations

import click

from .. import __version__
from .app import app_cmd
from .embed import classify, embed
from .errors import Group
from .export import convert, export_cmd
from .hub import download, info, list_cmd, push
from .index import index
from .train import eval_cmd, finetune, pretrain


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tclr-zoo")
def main() -> None:
    """Train, export and use TCLR video encoders."""


for _command in (pretrain, eval_cmd, finetune, export_cmd, embed, classify, info, convert, download, push, index,
                 list_cmd, app_cmd):
    main.add_command(_command)

__all__ = ["main"]
