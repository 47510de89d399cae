"""The ``tclr-zoo`` command line (click): parse, call the library, print.

One module per command family -- :mod:`.train` (pretrain, finetune, eval), :mod:`.export` (export,
convert), :mod:`.embed` (embed, classify), :mod:`.index` (index build, index search), :mod:`.hub`
(push, download, list, info) -- registered on the group in :mod:`.main`.
"""

from .main import main

__all__ = ["main"]
