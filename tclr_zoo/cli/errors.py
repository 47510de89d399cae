"""How the ``tclr-zoo`` commands fail: the exit statuses and the one-line error messages.

Exit status: 0 ok, 2 bad usage or bad input (one line on stderr naming the file and the problem),
1 unexpected failure (with a traceback, because that is a bug to report).

* :class:`Group` / :class:`OneLineUsageError`: click's usage errors of the group and of every
  subcommand (bad option value, missing argument) as one line, exit 2.
* :func:`user_errors_exit_2`: the library's "bad input" exceptions (:func:`user_errors`) as one
  line, exit 2; :func:`exit_with_error` is that line for a command's own checks. A library hint in
  Python terms is said with the command's flag instead (:func:`cli_message`).
"""

from __future__ import annotations

import functools
import sys
from typing import NoReturn

import click


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "bad usage or bad input" (exit 2), imported only when one is raised.

    Importing them up front would load torch and torchvision and make every `--help` take seconds.
    """
    from ..atomic import OutputInUseError, WriteError
    from ..data.datasets import DatasetError
    from ..data.decode import VideoDecodeError
    from ..hub.checkpoint import CheckpointError
    from ..hub.client import HubError
    from ..hub.convert import ConversionError
    from ..hub.format import ModelLoadError
    from ..inference.backends import BackendError
    from ..inference.ray_engine import RayEngineError
    from ..inference.shards import ShardError
    from ..models.registry import ModelNotFoundError
    from ..retrieval.types import IndexFormatError
    from ..runtime import RuntimeEnvError
    from ..train.config import RecipeError

    return (RecipeError, DatasetError, ModelNotFoundError, VideoDecodeError, CheckpointError, FileNotFoundError,
            FileExistsError, NotADirectoryError, PermissionError, ModelLoadError, BackendError, HubError,
            ConversionError, IndexFormatError, WriteError, ShardError, OutputInUseError, RuntimeEnvError,
            RayEngineError)


SKIP_BAD_HINT = "; pass --skip-bad to skip unreadable videos and record them in the output"


def exit_with_error(message: object) -> NoReturn:
    """A user mistake: ``tclr-zoo: error: MESSAGE`` on stderr, exit status 2 (an exception: its
    :func:`cli_message`)."""
    click.echo(f"tclr-zoo: error: {cli_message(message) if isinstance(message, BaseException) else message}",
               err=True)
    sys.exit(2)


def cli_message(err: BaseException) -> str:
    """What the command line says for a library exception: the library's hints name Python keywords
    (``pretrained=False``, ``backend='torch'``), so an exception that carries ``cli_hint``
    (``(flag, text)``, e.g. ``ModelNotFoundError``, ``BackendError``) says ``reason`` + ``text``
    instead -- or ``reason`` alone when this command has no such flag, so every hint printed works."""
    hint = getattr(err, "cli_hint", None)
    if hint is None:
        return str(err)
    flag, text = hint
    ctx = click.get_current_context(silent=True)
    flags = {opt for param in (ctx.command.params if ctx is not None else []) for opt in getattr(param, "opts", [])}
    return err.reason + (text if flag in flags else "")


def _hint(err: Exception, skip_bad: object) -> str:
    """The --skip-bad hint, for an unreadable video in a command that could have skipped it."""
    from ..data.decode import VideoDecodeError

    return SKIP_BAD_HINT if isinstance(err, VideoDecodeError) and skip_bad is False else ""


def user_errors_exit_2(func):
    """Turn a user mistake into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as err:
            if not isinstance(err, user_errors()):
                raise
            exit_with_error(f"{cli_message(err)}{_hint(err, kwargs.get('skip_bad'))}")

    return wrapper


class OneLineUsageError(click.UsageError):
    """Click's usage errors (bad option value, missing argument) as one line, like every other user
    mistake, instead of the usage text, a hint and the message on four lines."""

    def __init__(self, err: click.UsageError) -> None:
        super().__init__(err.format_message(), err.ctx)

    def show(self, file=None) -> None:
        command = "tclr-zoo"
        if self.ctx is not None:  # the subcommand path, under the installed name (not "python -m ...")
            command += self.ctx.command_path[len(self.ctx.find_root().command_path):]
        click.echo(f"{command}: error: {self.format_message()} (see {command} --help)", file=file, err=True)


def _one_line(err: click.UsageError) -> OneLineUsageError:
    return err if isinstance(err, OneLineUsageError) else OneLineUsageError(err)


class Group(click.Group):
    """The command group: usage errors of the group and of every subcommand in one line, exit 2."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            raise _one_line(err) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise _one_line(err) from None


__all__ = ["Group", "OneLineUsageError", "SKIP_BAD_HINT", "cli_message", "exit_with_error", "user_errors",
           "user_errors_exit_2"]
