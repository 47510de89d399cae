"""Writing files and folders so that a crash, a kill, a full disk or a read-only target leaves either
the old version or the new one -- never half of the new one, and never no version at all.

* :func:`atomic_write` writes one file through a temporary sibling, fsyncs it and renames it into
  place (``rename`` within a folder is atomic on POSIX file systems).
* :func:`staged_directory` does the same for a folder of files (a saved model, an export, an index,
  a Triton repository): the caller fills a hidden sibling folder; only when the block finishes are
  its files fsynced (:func:`fsync_tree`, the one place folder writers do it) and it replaces the
  target, and the old target is deleted only after the new one is in place.
* :func:`refuse_to_replace` is the one "may I put this here?" check every writer makes first.
* :func:`exclusive_output` is the one "am I the only writer?" check: an OS lock (``flock``) on a
  hidden sibling of the output, held while a run, an export, an index build or an embedding job
  writes it. The kernel drops the lock when its holder exits, however it exits (``SIGKILL``
  included), so a lock is never stale; readers never take it and are never blocked.
* :func:`file_sha256` is the one file digest: what a writer records beside a file (weights, index
  embeddings, ONNX graphs) and what a reader checks before trusting it.

Leftovers of a process killed mid-write (``SIGKILL`` cannot be caught) are hidden siblings named
after the target and the writer's process id; :func:`remove_stale_siblings` deletes those whose
process is gone, and :func:`staged_directory` calls it before it starts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

# Errors that mean "this place cannot take the output": reported as WriteError naming the target.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


class WriteError(OSError):
    """An output that could not be written (full disk, read-only or forbidden folder, file size
    limit). The message names the target and says that what was there before is unchanged."""

    def __init__(self, target: Path, err: OSError) -> None:
        super().__init__(err.errno, f"{target}: cannot write ({err.strerror or err}); "
                                    "nothing that was there before was changed")

    def __str__(self) -> str:
        return self.strerror


def _as_write_error(target: Path, err: BaseException) -> BaseException:
    if isinstance(err, OSError) and not isinstance(err, WriteError) and err.errno in _WRITE_ERRNOS:
        return WriteError(target, err)
    return err


class OutputExistsError(FileExistsError, ValueError):
    """An output that is already there and would be replaced without ``--overwrite`` (exit 2).

    Also a ``ValueError``, like ``io.UnsupportedOperation``: library callers of ``VideoIndex.save``
    have always caught a refused target as one."""


def refuse_to_replace(path: str | os.PathLike, *, overwrite: bool, kind: str = "file",
                      flag: str = "--overwrite", ours: Callable[[Path], bool] | None = None,
                      ours_name: str = "") -> None:
    """The one check every writer makes before any work: is it allowed to put ``path`` there?

    An absent path or an empty folder is always fine; an existing file, or a folder with anything
    in it, only with ``overwrite`` (a user's README, config or videos are never replaced silently).
    ``kind`` is what the writer makes (``"file"`` or ``"folder"``): a file where a folder goes, or
    the other way round, is refused even with ``overwrite``.

    ``ours`` (folders only) recognises this writer's own earlier output, which it may always
    replace -- a saved index, the generated dataset; ``ours_name`` says what it looks for (e.g.
    "manifest.json") in the refusal. ``flag=""`` for library writers that have no such option.
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if kind == "folder":
        if not path.is_dir():
            raise OutputExistsError(f"{path}: exists and is not a folder; choose another name")
        if overwrite or not any(path.iterdir()) or (ours is not None and ours(path)):
            return
        if ours is not None:
            fix = f"choose another name or pass {flag}" if flag else "choose another name or empty it"
            raise OutputExistsError(f"{path}: folder is not empty and holds no {ours_name}; refusing to replace it "
                                    f"({fix})")
        raise OutputExistsError(f"{path}: folder exists and is not empty; choose another name or pass {flag} "
                                "to replace it")
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a folder; give a file name")
    if not overwrite:
        raise OutputExistsError(f"{path}: exists; choose another name or pass {flag} to replace it")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object],
                 before_replace: Callable[[], None] | None = None) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync, and rename it into place
    (calling ``before_replace()`` just before the rename). On any error the temp file is removed and
    an existing ``path`` is untouched."""

    def produce(_tmp: Path, fd: int) -> None:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    _write_through_temp(Path(path), produce, before_replace)


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` through a temp sibling and a rename, like :func:`atomic_write`.

    Two fixes over calling it directly: its I/O failures become ``OSError`` (it reports a full disk
    as ``SafetensorError: ... (os error 28)``, which callers could not tell from a bug), and the
    file gets the user's umask like every other output -- safetensors writes through a private
    temporary file of its own, so its files come out ``-rw-------``, unreadable to another user
    or a serving container.
    """
    from safetensors.torch import save_file

    def produce(tmp: Path, fd: int) -> None:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0o666 minus the umask: what open() gives
        os.close(fd)
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except Exception as err:  # noqa: BLE001 - re-raised unchanged unless it is an OS error
            code = re.search(r"os error (\d+)", str(err))
            if code is None:
                raise
            number = int(code.group(1))
            raise OSError(number, os.strerror(number), str(path)) from err
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())

    _write_through_temp(Path(path), produce)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights and graphs can be hundreds of MB).

    Args:
        path: the file to hash.
        chunk: bytes read at a time; any size gives the same digest.

    Returns:
        The 64-character lowercase hex digest. ``OSError`` propagates when the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _write_through_temp(path: Path, produce: Callable[[Path, int], None],
                        before_replace: Callable[[], None] | None = None) -> None:
    """Create a temp sibling of ``path`` (mode 0o666 minus the umask), let ``produce(tmp, fd)``
    fill it (and close ``fd``), then rename it over ``path``; on any error remove it."""
    tmp = _sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_siblings(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the user's umask, as for folders
    except OSError as err:
        raise _as_write_error(path, err) from err
    try:
        produce(tmp, fd)
        fault_injection_pause()
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        failure = _as_write_error(path, err)
        if failure is err:
            raise
        raise failure from err
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then its folders: what :func:`staged_directory` does
    before it publishes, so no writer has to remember to (a rename is only as durable as the data
    it points at)."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def fault_injection_pause() -> None:
    """Fault injection for the crash tests (``TCLR_ZOO_TEST_SLOW_WRITE=SECONDS``): a window in which
    a test can SIGKILL the process with the new bytes written but not yet renamed into place."""
    seconds = os.environ.get("TCLR_ZOO_TEST_SLOW_WRITE")
    if seconds:
        import time

        time.sleep(float(seconds))


def _sibling(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


_SIBLING = re.compile(r"\.(?P<name>.+)\.(tmp|staging|old)-(?P<pid>\d+)-[0-9a-f]{8}")


def remove_stale_siblings(target: str | os.PathLike) -> list[Path]:
    """Delete the hidden temporary files and staging/backup folders of ``target`` left by processes
    that no longer run (a live writer's are kept)."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        match = _SIBLING.fullmatch(entry.name)
        if match and match["name"] == target.name and not _process_alive(int(match["pid"])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of ``target`` to fill; when the block ends normally it
    replaces ``target``; when it raises, the sibling is deleted and ``target`` is left as it was.

    The caller decides beforehand whether replacing ``target`` is allowed. Parent folders created
    here are removed again when nothing was published.
    """
    target = Path(target)
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    staging = _sibling(target, "staging")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_siblings(target)
        staging.mkdir()  # with the user's umask (mkdtemp would make it private)
        yield staging
        fsync_tree(staging)
        fault_injection_pause()
        publish_directory(staging, target)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for path in created:  # innermost first
            with contextlib.suppress(OSError):
                path.rmdir()
        failure = _as_write_error(target, err)
        if failure is err:
            raise
        raise failure from err


def publish_directory(staging: Path, target: Path) -> None:
    """Move the complete ``staging`` folder to ``target``; an old ``target`` is deleted only after the
    new one is in place, and restored if the move fails."""
    if not target.exists():
        os.replace(staging, target)
        fsync_dir(target.parent)
        return
    backup = _sibling(target, "old")
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(backup, target)
        raise
    fsync_dir(target.parent)
    shutil.rmtree(backup, ignore_errors=True)


class OutputInUseError(RuntimeError):
    """Another process is writing this output (a second run into one folder, a second export...):
    refused before any work, naming the holder's PID and command (the CLI exits 2)."""


#: Locks this process holds: {lock file: [open descriptor, depth]} (one writer may nest its locks).
_HELD: dict[Path, list[int]] = {}
_HELD_GUARD = threading.Lock()


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: a hidden sibling, so that it survives the target being replaced
    (a staged folder published over it, ``--overwrite``) and is never inside a user's folder."""
    target = Path(target).absolute()
    return target.parent / f".{target.name}.lock"


def _command_line() -> str:
    """What this process is, for a refused second writer: ``tclr-zoo pretrain --out runs/a``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if name in ("__main__.py", "-m", "-c", ""):
        name = "tclr-zoo" if any("tclr_zoo" in a for a in sys.orig_argv) else "python"
    line = " ".join([name, *sys.argv[1:]])
    return line if len(line) <= 200 else line[:197] + "..."


def _holder(lock: Path) -> str:
    """Who holds ``lock``, as its holder wrote it: ``PID 123 (tclr-zoo pretrain ...), since 10:42:07``."""
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process (it has just started)"
    since = time.strftime("%H:%M:%S", time.localtime(info["started"])) if info.get("started") else "?"
    return f"PID {info['pid']} ({info.get('command', '?')}), since {since}"


def _acquire(lock: Path, target: Path) -> int:
    """Open ``lock`` and take its exclusive ``flock`` without waiting; the descriptor holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputInUseError(f"{target}: another tclr-zoo process is writing it: {_holder(lock)}; wait for "
                                   "it to finish (or stop it), or choose another output") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file between our open and our flock: retry
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def exclusive_output(target: str | os.PathLike, *, command: str | None = None) -> Iterator[Path]:
    """Be the only writer of ``target`` (a run folder, an export folder, an index, an embeddings
    file) for the block, or raise :class:`OutputInUseError` at once, naming the holder.

    The lock is an OS file lock on :func:`lock_path` (``flock``): released by the kernel when this
    process ends, even by ``SIGKILL``, so there is no stale lock to clean up by hand; the file itself
    records the holder's PID and ``command`` for the refusal and is removed on release. Taken again
    in the same process (the CLI takes it before loading a model, the library writer again) it
    nests. Readers do not take it. Parent folders created for the lock are removed again when
    nothing else was put in them, so a refused or failed start leaves nothing behind.

    Args:
        target: the output to guard (a file or a folder; it need not exist yet).
        command: what this process is, as the refusal of a second writer shows it (default: this
            process's command line, e.g. ``tclr-zoo pretrain --out runs/a``).

    Yields:
        The lock file's path (:func:`lock_path` of ``target``), held until the block ends.

    Raises:
        OutputInUseError: another process holds the lock; the message names its PID and command.
        WriteError: the lock cannot be created there (read-only or full file system, no permission).
    """
    target = Path(target)
    lock = lock_path(target)
    with _HELD_GUARD:
        if lock in _HELD:
            _HELD[lock][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield lock
        finally:
            with _HELD_GUARD:
                _HELD[lock][1] -= 1
        return
    created = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(lock, target)
    except BaseException as err:
        _remove_empty(created)
        failure = _as_write_error(target, err)
        if failure is err:
            raise
        raise failure from err
    try:
        record = {"pid": os.getpid(), "command": command or _command_line(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        with _HELD_GUARD:
            _HELD[lock] = [fd, 1]
        yield lock
    finally:
        with _HELD_GUARD:
            _HELD.pop(lock, None)
        with contextlib.suppress(OSError):
            lock.unlink()  # while still locked: a waiting opener sees another inode and retries
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (innermost first) that are still empty."""
    for path in folders:
        with contextlib.suppress(OSError):
            path.rmdir()


__all__ = ["OutputExistsError", "OutputInUseError", "WriteError", "atomic_write", "exclusive_output",
           "fault_injection_pause", "file_sha256", "fsync_dir", "fsync_tree", "lock_path", "publish_directory",
           "refuse_to_replace", "remove_stale_siblings", "save_safetensors", "staged_directory"]
