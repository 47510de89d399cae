"""The network side of the Hub: download into the Hugging Face cache, offline reuse, upload.

Everything goes through ``huggingface_hub``; what this module adds:

* settings read from the environment *at call time* (:func:`hub_settings`) and passed explicitly to each
  call, because ``huggingface_hub`` reads ``HF_ENDPOINT``/``HF_HUB_OFFLINE``/``HF_HUB_CACHE`` once, at import;
* safe file selection: only ``config.json``, ``model.safetensors``, ``README.md`` (and ``onnx/*`` on
  request) are ever downloaded or uploaded; pickles (``*.bin``, ``*.pt``, ``*.pth``, ...) never are;
* one exception type, :class:`HubError`, whose message says what went wrong and what to do about it
  (the CLI turns it into exit status 2).

The cache is the standard one (``HF_HUB_CACHE``, or ``$HF_HOME/hub``), so a cache filled by
``tclr-zoo download`` on a machine with network can be copied to an offline machine and used there with
``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..constants import CARD_NAME, CONFIG_NAME, HF_PREFIX, ONNX_DIR, WEIGHTS_NAME

DEFAULT_ENDPOINT = "https://huggingface.co"

#: What loading a model needs (the default of :func:`fetch_snapshot`).
MODEL_PATTERNS: tuple[str, ...] = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
#: The same plus the exported ONNX graphs (the default of :func:`download` and :func:`push_folder`).
ALL_PATTERNS: tuple[str, ...] = MODEL_PATTERNS + (f"{ONNX_DIR}/*",)
#: Never downloaded nor uploaded, whatever ``allow_patterns`` says: pickled weights run code on load.
PICKLE_PATTERNS: tuple[str, ...] = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.joblib")

_TRUE = {"1", "on", "yes", "true"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class HubError(Exception):
    """A Hub operation failed; the message says what went wrong and what to do (CLI exit status 2)."""


# --------------------------------------------------------------------------------------------- settings


def hub_settings() -> dict[str, Any]:
    """The Hub settings, read from the environment now (not at import time).

    * ``endpoint``: ``HF_ENDPOINT`` (default ``https://huggingface.co``), without a trailing ``/``;
    * ``offline``: ``HF_HUB_OFFLINE`` is one of 1/true/yes/on: only the local cache is used;
    * ``cache_dir``: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``,
      else ``~/.cache/huggingface/hub``;
    * ``etag_timeout``: ``HF_HUB_ETAG_TIMEOUT`` seconds (default 10) for the per-file metadata requests.
    """
    env = os.environ
    endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")
    offline = env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    if env.get("HF_HUB_CACHE"):
        cache_dir = env["HF_HUB_CACHE"]
    else:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
        cache_dir = os.path.join(home, "hub")
    try:
        etag_timeout = float(env.get("HF_HUB_ETAG_TIMEOUT") or 10)
    except ValueError:
        etag_timeout = 10.0
    return {
        "endpoint": endpoint,
        "offline": offline,
        "cache_dir": Path(os.path.expandvars(os.path.expanduser(cache_dir))),
        "etag_timeout": etag_timeout,
    }


# --------------------------------------------------------------------------------------------- download


def fetch_snapshot(repo_id: str, revision: str | None = None, *, allow_patterns: Iterable[str] | None = None,
                   progress: bool = False, required: Sequence[str] = (WEIGHTS_NAME,)) -> tuple[Path, str]:
    """Download (or find in the cache) ``repo_id`` at ``revision``; return ``(snapshot folder, commit sha)``.

    ``revision`` is a branch, a tag or a commit sha (default: ``main``); a full sha pins the exact files
    of that commit. Only ``allow_patterns`` are fetched (default :data:`MODEL_PATTERNS`), never pickles.
    With ``HF_HUB_OFFLINE=1`` nothing goes over the network; when the endpoint cannot be reached, a
    cached snapshot of the same revision is used. The files named in ``required`` must be in the result.
    Raises :class:`HubError` with a one-line explanation on any failure.
    """
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    repo_id = _check_repo_id(repo_id)
    revision = (revision or "").strip() or None
    patterns = list(MODEL_PATTERNS if allow_patterns is None else allow_patterns)
    settings = hub_settings()
    endpoint, offline = settings["endpoint"], settings["offline"]
    where = f"{repo_id}" + (f"@{revision}" if revision else "")

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            repo_type="model",
            cache_dir=settings["cache_dir"],
            endpoint=endpoint,
            local_files_only=offline,
            allow_patterns=patterns,
            ignore_patterns=list(PICKLE_PATTERNS),
            library_name="tclr_zoo",
            library_version=__version__,
            etag_timeout=settings["etag_timeout"],
            tqdm_class=None if progress else _silent_tqdm(),
        )
    except hf_errors.RevisionNotFoundError:
        refs = _list_refs(repo_id, endpoint) or ()
        raise HubError(_revision_message(repo_id, revision, endpoint, refs)) from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError) as err:
        raise _not_found(repo_id, revision, endpoint, err) from None
    except hf_errors.IncompleteSnapshotError:
        raise HubError(
            f"{where}: the cached copy in {settings['cache_dir']} is incomplete and {_no_network(settings)}; "
            f"{_how_to_seed(repo_id, revision)}") from None
    except hf_errors.LocalEntryNotFoundError as err:
        cause = err.__cause__
        if offline or isinstance(cause, hf_errors.OfflineModeIsEnabled):
            raise HubError(
                f"{where} is not in the local cache ({settings['cache_dir']}) and offline mode is on "
                f"(HF_HUB_OFFLINE=1); {_how_to_seed(repo_id, revision)}") from None
        if isinstance(cause, hf_errors.HfHubHTTPError) and _status(cause) in (401, 403, 404):
            # e.g. an unknown commit sha: the file listing of that commit is 404.
            raise _not_found(repo_id, revision, endpoint, cause) from None
        raise HubError(_unreachable(endpoint, where, cause or err, settings)) from None
    except hf_errors.HfHubHTTPError as err:
        if _status(err) in (401, 403, 404):
            raise _not_found(repo_id, revision, endpoint, err) from None
        raise HubError(f"{where}: the Hub at {endpoint} answered {_one_line(err)}; retry later") from None
    except hf_errors.HFValidationError as err:
        raise HubError(f"{where}: invalid repository name or revision ({_one_line(err)})") from None
    except (OSError, *_http_errors()) as err:
        # Connection refused or lost while downloading (after huggingface_hub's own resume attempts), a
        # truncated file (size check), a full disk... huggingface_hub writes each file to a unique
        # blobs/*.incomplete file, renames it into place only once complete and deletes it on failure, so
        # a cut download never looks complete (the files already done stay; the next call fetches the rest).
        if isinstance(err, OSError) and not _is_network(err):
            raise HubError(f"{where}: download into {settings['cache_dir']} failed: {_one_line(err)}") from None
        raise HubError(_unreachable(endpoint, where, err, settings)) from None

    folder = Path(folder)
    commit = folder.name
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        listing = _cached_listing(repo_id, commit, settings["cache_dir"])
        pickles = [p for p in listing if any(_match(p, pat) for pat in PICKLE_PATTERNS)]
        hint = (f"it has pickled weights ({', '.join(pickles)}), which tclr_zoo never downloads; "
                "publish its weights as model.safetensors") if pickles else \
            "is it a tclr_zoo model repository?"
        raise HubError(f"{repo_id}@{commit[:12]}: no {', '.join(missing)} in the repository; {hint}")
    return folder, commit


def download(repo_id: str, revision: str | None = None, *, progress: bool = True) -> tuple[Path, str]:
    """Pre-seed the cache with ``repo_id`` (weights, config, card and ``onnx/``), for later offline use."""
    return fetch_snapshot(repo_id, revision, allow_patterns=ALL_PATTERNS, progress=progress)


# --------------------------------------------------------------------------------------------- upload


def push_folder(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None,
                commit_message: str | None = None, private: bool = False, token: str | None = None,
                create: bool = True) -> str:
    """Upload a saved-model folder (config, weights, card, ``onnx/``) to ``repo_id``; return the commit URL.

    The repository (and the branch ``revision``, if given) is created when missing unless ``create`` is
    false. Only :data:`ALL_PATTERNS` are uploaded; pickles never are. The commit sha is the URL's last part.
    """
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    repo_id = _check_repo_id(repo_id)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HubError(f"{folder}: no such folder to push")
    for name in ("config.json", WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise HubError(f"{folder}: no {name}; push a folder written by save_pretrained or tclr-zoo export")
    settings = hub_settings()
    endpoint = settings["endpoint"]
    if settings["offline"]:
        raise HubError(f"cannot push {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); unset it to upload")
    api = HfApi(endpoint=endpoint, token=token, library_name="tclr_zoo", library_version=__version__)
    revision = (revision or "").strip() or None
    try:
        if create:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if revision is not None and revision != "main":
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            revision=revision,
            commit_message=commit_message or f"Upload {folder.name} with tclr-zoo {__version__}",
            allow_patterns=list(ALL_PATTERNS),
            ignore_patterns=list(PICKLE_PATTERNS),
        )
    except hf_errors.RevisionNotFoundError:
        raise HubError(f"{repo_id}: branch {revision!r} does not exist on {endpoint}; "
                       "create it first or push without create=False") from None
    except hf_errors.RepositoryNotFoundError:
        raise HubError(f"{repo_id} not found on {endpoint} (or no write access); create it, or push with "
                       "repository creation enabled, logged in with a write token") from None
    except hf_errors.HfHubHTTPError as err:
        if _status(err) in (401, 403):
            raise HubError(f"not allowed to push to {repo_id} on {endpoint} ({_status(err)}); log in with a "
                           "write token (`hf auth login`, or set HF_TOKEN)") from None
        raise HubError(f"push to {repo_id} on {endpoint} failed: {_one_line(err)}") from None
    except ValueError as err:
        # what huggingface_hub refuses to send or the Hub refuses to take, e.g. a model card whose metadata
        # the Hub's /api/validate-yaml rejects ("Invalid metadata in README.md.\n- <why>")
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise HubError(f"push of {folder} to {repo_id} refused: {' '.join(lines) or type(err).__name__}") from None
    except (OSError, *_http_errors()) as err:
        if isinstance(err, OSError) and not _is_network(err):
            raise HubError(f"push of {folder} to {repo_id} failed: {_one_line(err)}") from None
        raise HubError(f"cannot reach the Hub at {endpoint} to push {repo_id} ({_one_line(err)}); "
                       "check the network and HF_ENDPOINT") from None
    return str(getattr(info, "commit_url", None) or info)


# --------------------------------------------------------------------------------------------- helpers


def _check_repo_id(repo_id: str) -> str:
    repo_id = os.fspath(repo_id).strip()
    if repo_id.startswith(HF_PREFIX):
        repo_id = repo_id[len(HF_PREFIX):]
    if not _REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise HubError(f"{repo_id!r}: not a Hub repository name; expected ORG/REPO")
    return repo_id


def _how_to_seed(repo_id: str, revision: str | None) -> str:
    target = f"{HF_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")
    return (f"fetch it on a machine with network with `tclr-zoo download {target}`, then copy that "
            "machine's HF_HOME (or HF_HUB_CACHE) here")


def _no_network(settings: dict[str, Any]) -> str:
    return "offline mode is on (HF_HUB_OFFLINE=1)" if settings["offline"] else \
        f"the Hub at {settings['endpoint']} cannot be reached"


def _unreachable(endpoint: str, where: str, err: BaseException, settings: dict[str, Any]) -> str:
    return (f"cannot reach the Hub at {endpoint} for {where} ({_one_line(err)}) and no complete copy is cached "
            f"in {settings['cache_dir']}; check the network and HF_ENDPOINT, or use a pre-seeded cache with "
            "HF_HUB_OFFLINE=1")


def _revision_message(repo_id: str, revision: str | None, endpoint: str, refs: Sequence[str] = ()) -> str:
    known = f" (branches and tags: {', '.join(refs)})" if refs else ""
    return (f"{repo_id}: revision {revision!r} not found on {endpoint}{known}; "
            "use a branch, a tag or a full commit sha of that repository")


def _not_found(repo_id: str, revision: str | None, endpoint: str, err: BaseException) -> HubError:
    """Repository or revision? Some servers answer the same 401/404 for both: ask for the refs."""
    if revision is not None and revision != "main":
        refs = _list_refs(repo_id, endpoint)
        if refs is not None:
            return HubError(_revision_message(repo_id, revision, endpoint, refs))
    return HubError(f"repository {repo_id} not found on {endpoint} (HTTP {_status(err) or '?'}); check the name, "
                    "or for a private or gated repository log in (`hf auth login`, or set HF_TOKEN)")


def _list_refs(repo_id: str, endpoint: str) -> list[str] | None:
    """Branch and tag names of ``repo_id``, or None when the repository cannot be listed."""
    from huggingface_hub import HfApi

    try:
        refs = HfApi(endpoint=endpoint, library_name="tclr_zoo", library_version=__version__) \
            .list_repo_refs(repo_id, repo_type="model")
    except Exception:  # noqa: BLE001 - only a hint for the error message
        return None
    return [ref.name for ref in [*refs.branches, *refs.tags]]


def _cached_listing(repo_id: str, commit: str, cache_dir: Path) -> list[str]:
    try:
        from huggingface_hub import get_cached_repo_tree

        return [f.path for f in get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)]
    except Exception:  # noqa: BLE001 - only a hint for the error message
        return []


def _match(path: str, pattern: str) -> bool:
    from fnmatch import fnmatch

    return fnmatch(path, pattern)


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    if text.startswith("Got: "):
        text = text[len("Got: "):]
    return text if len(text) <= 200 else text[:197] + "..."


def _http_errors() -> tuple[type[BaseException], ...]:
    """The transport errors of the HTTP client huggingface_hub uses (httpx2 in 2.x, httpx before)."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        for name in ("TransportError", "RequestException"):
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found) or (ConnectionError,)


def _is_network(err: BaseException) -> bool:
    return isinstance(err, (ConnectionError, TimeoutError, _http_errors())) or \
        "Consistency check failed" in str(err)


def _silent_tqdm():
    from tqdm.auto import tqdm

    class Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


__all__ = ["ALL_PATTERNS", "DEFAULT_ENDPOINT", "HubError", "MODEL_PATTERNS", "PICKLE_PATTERNS", "download",
           "fetch_snapshot", "hub_settings", "push_folder"]
