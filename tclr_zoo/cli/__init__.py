"""The ``tclr-zoo`` command line (click): a thin shell that parses, calls the library and prints, so
that everything a command does can also be done from Python.

One module per command family -- :mod:`.train` (pretrain, finetune, eval), :mod:`.export` (export,
convert), :mod:`.embed` (embed, classify), :mod:`.index` (index build, index search), :mod:`.hub`
(push, download, list, info), :mod:`.app` (app) -- registered on the group in :mod:`.main`.
:mod:`.errors` is how every command fails (exit 2 and one line for a user's mistake), :mod:`.options`
what several share; ``python -m tclr_zoo.cli`` (what ``torchrun`` starts) runs the same group.
"""

from .main import main

__all__ = ["main"]
