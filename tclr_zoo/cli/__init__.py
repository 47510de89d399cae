"""The ``tclr-zoo`` command line (click): parse, call the library, print."""

from .main import main

__all__ = ["main"]
