"""A test stand-in for the Hugging Face Hub's upload API (and downloads of what was uploaded), on loopback.

The public Hub cannot be reached from the machines these tests run on, and the local download server
(olah, see ``hub_server``) does not accept uploads. This stub implements just enough of the Hub's HTTP
API for ``HfApi(endpoint=...).create_repo``, ``create_branch`` and ``upload_folder`` / ``create_commit``
of huggingface_hub 2.x to run end to end, unmodified, and keeps what was committed in memory so that a
test can check which files arrived, byte for byte; it also serves those commits back to the same client's
``snapshot_download`` / ``hf_hub_download``. Endpoints (``{repo}`` is ``ORG/NAME``, revisions are
URL-quoted branch names or commit oids; a commit oid serves the tree of that very commit):

* ``POST /api/repos/create``: a model repository with an initial commit holding ``.gitattributes``
  (409 when it exists, as the Hub answers; ``visibility`` is recorded in :attr:`StubRepo.private`);
* ``POST /api/models/{repo}/branch/{branch}``: a branch from ``startingPoint`` or ``main`` (409 if present);
* ``GET /api/models/{repo}``, ``GET /api/models/{repo}/revision/{rev}``: repository info (``sha``,
  ``siblings`` with ``rfilename``), which huggingface_hub asks for when a commit would change nothing, and
  ``snapshot_download`` to resolve a branch to its commit;
* ``GET /api/models/{repo}/tree/{rev}[/{folder}]`` (``recursive``): the Hub's tree listing (``type``,
  ``path``, ``size``, ``oid`` = git blob sha1, and for LFS files ``lfs`` = ``oid`` (sha256), ``size``,
  ``pointerSize``), paginated by ``cursor`` with a ``Link: <...>; rel="next"`` header past
  ``tree_page_size`` entries (1000, as on the Hub), which ``snapshot_download`` lists files with;
* ``HEAD`` and ``GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` (git blob
  sha1 of a regular file, sha256 of an LFS one, which also gets ``X-Linked-Etag`` and ``X-Linked-Size``),
  ``Content-Length``, and ``Range: bytes=N-[M]`` answered 206 (the Hub redirects LFS files to its CDN;
  here they are served directly). A missing file is 404 ``EntryNotFound`` with ``X-Repo-Commit``;
* ``GET /api/models/{repo}/refs``: branches;
* ``POST /api/validate-yaml``: the model card's front matter must be a YAML mapping (else 400);
* ``GET /api/agent-harnesses``: an empty registry (huggingface_hub fetches it for its User-Agent);
* ``POST /api/models/{repo}/preupload/{rev}``: ``uploadMode`` ``lfs`` for paths matching
  :data:`LFS_PATTERNS` (the Hub's default ``.gitattributes``: ``*.safetensors``, ``*.onnx``, ...), for
  files that look binary and for files over 10 MB, else ``regular``; ``oid`` of the file already there
  (git blob sha1, or the sha256 of an LFS file), so unchanged files are skipped as on the Hub;
* ``POST /{repo}.git/info/lfs/objects/batch``: git-LFS batch API (``basic`` transfer, or the Hub's
  ``multipart`` one with ``multipart_chunk_size``), handing out ``/lfs-upload/{oid}`` URLs, plus
  ``PUT /lfs-upload/{oid}`` (whole object, or ``.../part/{n}`` answering an ``ETag``),
  ``POST /lfs-upload/{oid}`` (multipart completion) and ``POST /lfs-verify/{oid}``; contents are checked
  against their sha256 and size;
* ``POST /api/models/{repo}/commit/{rev}``: the ndjson commit (``header``, ``file`` with inline base64,
  ``lfsFile`` pointers to uploaded LFS objects, ``deletedFile``, ``deletedFolder``); a ``file`` entry
  whose path is an LFS pattern is refused (400), as the Hub refuses binary files outside LFS; answers
  ``commitOid`` and ``commitUrl`` = ``{endpoint}/{repo}/commit/{oid}``.

Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which
huggingface_hub turns into its typed exceptions. With ``tokens`` given, writes (repository and branch
creation, YAML validation, preupload, commit, LFS batch) without ``Authorization: Bearer <one of them>`` get
401; reads (info, refs, tree, resolve), as on the Hub, need no token for a public repository, a valid one
for a private repository (else 401 ``RepoNotFound``), and any token sent must be valid (else 401).
:meth:`HubUploadStub.commit_files` commits files server-side, e.g. pickles that the client under test never
uploads, to check that it never downloads them. Every request is recorded in :attr:`HubUploadStub.requests`
(method, path, ``Authorization`` and ``User-Agent`` headers); anything else gets 501 and is listed in
:attr:`HubUploadStub.unhandled`. Not implemented: pull requests, tags, copies, deletions of repos, and the
Xet transfer protocol (``hf_xet``): run the client with ``HF_HUB_DISABLE_XET=1`` (in a process that has
already imported huggingface_hub, set ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``) so that
large files go through the LFS endpoints above. For downloads, pass ``endpoint=hub.endpoint`` (as
tclr_zoo.hub.client does from ``HF_ENDPOINT`` at call time): huggingface_hub builds file URLs from
``constants.HUGGINGFACE_CO_URL_TEMPLATE`` and swaps the endpoint only where the URL starts with
``constants.ENDPOINT``, so a test that patches ``constants.ENDPOINT`` must patch the template alike. Usage::

    with HubUploadStub() as hub:               # or the ``hub`` fixture below
        HfApi(endpoint=hub.endpoint, token="hf_x").upload_folder(...)
        assert hub.files("org/model")["config.json"] == b"..."
        snapshot_download("org/model", endpoint=hub.endpoint, cache_dir=...)
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import huggingface_hub.constants
import pytest

#: Paths the Hub's default .gitattributes stores with LFS (a subset of it).
LFS_PATTERNS: tuple[str, ...] = ("*.safetensors", "*.onnx", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl",
                                 "*.h5", "*.msgpack", "*.npy", "*.npz", "*.zip", "*.tar.gz", "*.onnx_data")
REGULAR_MAX_SIZE = 10 * 1024 * 1024
TREE_PAGE_SIZE = 1000  # the Hub's page size for tree listings (50 with expand)
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-LFS pointer file that git stores in place of an LFS file."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


@dataclass
class StubCommit:
    oid: str
    message: str
    description: str
    files: dict[str, bytes]  # the whole tree after this commit: path -> content
    lfs: set[str]  # the paths of ``files`` stored with LFS
    changed: list[str] = field(default_factory=list)  # paths added or replaced by this commit
    deleted: list[str] = field(default_factory=list)
    parent: str | None = None


@dataclass
class StubRepo:
    repo_id: str
    private: bool | None
    branches: dict[str, list[StubCommit]]  # branch -> its commits, oldest first


class StubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})


class HubUploadStub:
    """The stub server (see the module docstring); ``start()``/``close()`` or use it as a context manager."""

    def __init__(self, *, tokens: set[str] | None = None, multipart_chunk_size: int | None = None,
                 tree_page_size: int = TREE_PAGE_SIZE):
        self.tokens = tokens
        self.multipart_chunk_size = multipart_chunk_size
        self.tree_page_size = tree_page_size
        self.repos: dict[str, StubRepo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[dict[str, Any]] = []
        self.unhandled: list[str] = []
        self._parts: dict[str, dict[int, bytes]] = {}
        self._counter = itertools.count()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("HubUploadStub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubUploadStub:
        stub = self

        class Handler(_Handler):
            pass

        Handler.stub = stub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: a free port
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hub-upload-stub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> HubUploadStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ inspection

    def commits(self, repo_id: str, branch: str = "main") -> list[StubCommit]:
        return self.repos[repo_id].branches[branch]

    def head(self, repo_id: str, branch: str = "main") -> StubCommit:
        return self.commits(repo_id, branch)[-1]

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        """The tree at the head of ``branch``: path -> bytes (``.gitattributes`` included)."""
        return dict(self.head(repo_id, branch).files)

    def paths(self, method: str | None = None) -> list[str]:
        """The request paths received (of ``method`` only, if given), in order."""
        return [r["path"] for r in self.requests if method is None or r["method"] == method]

    def commit_files(self, repo_id: str, files: dict[str, bytes], *, message: str = "direct commit",
                     branch: str = "main", delete: tuple[str, ...] | list[str] = ()) -> StubCommit:
        """Commit ``files`` (path -> bytes) and the deletion of ``delete`` to ``branch`` server-side, without
        the HTTP API: e.g. files that the client under test would never upload (pickles). A path is stored
        with LFS as the preupload answer would say (:data:`LFS_PATTERNS`, binary or over 10 MB)."""
        with self._lock:
            commits = self.repos[repo_id].branches[branch]
            parent = commits[-1]
            tree, lfs = dict(parent.files), set(parent.lfs)
            for path, data in files.items():
                tree[path] = data
                if _is_lfs_path(path) or len(data) > REGULAR_MAX_SIZE or b"\0" in data[:512]:
                    lfs.add(path)
                    self.lfs_objects[hashlib.sha256(data).hexdigest()] = data
                else:
                    lfs.discard(path)
            for path in delete:
                del tree[path]
                lfs.discard(path)
            return self._append_commit(repo_id, branch, message, "", tree, lfs, list(files), list(delete))

    # ------------------------------------------------------------------------------------------ routes

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, dict[str, str], Any]:
        """Answer one request: (status, extra headers, JSON-able body or raw bytes)."""
        route = self._route(method, path)
        if route is None:
            with self._lock:
                self.unhandled.append(f"{method} {path}")
            raise StubError(501, f"hub_upload_stub does not implement {method} {path}"
                            + (" (Xet uploads: set HF_HUB_DISABLE_XET=1)" if "xet" in path else ""))
        name, args = route
        if name in _AUTHENTICATED:
            self._check_token(headers)
        if "create_pr" in query:
            raise StubError(400, "hub_upload_stub does not implement pull requests")
        kwargs: dict[str, Any] = {"body": body}
        if name in _READ:
            kwargs.update(query=query, headers=headers)
        with self._lock:
            if name in _READ:
                self._check_read(args[0], headers)
            return getattr(self, f"_{name}")(*args, **kwargs)

    def _route(self, method: str, path: str) -> tuple[str, tuple[str | None, ...]] | None:
        for verb, pattern, name in _ROUTES:
            if verb == method:
                match = pattern.fullmatch(path)
                if match:
                    return name, tuple(None if g is None else unquote(g) for g in match.groups())
        return None

    def _check_token(self, headers: Any) -> None:
        if self.tokens is None:
            return
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.tokens:
            raise StubError(401, "Invalid username or password." if not auth else
                            "Invalid credentials in Authorization header")

    def _check_read(self, repo_id: str, headers: Any) -> None:
        """Reads, as on the Hub: a public repository needs no token, but a token sent must be valid; a private
        one needs a valid token, and without one is answered 401 ``RepoNotFound`` (its existence is not told)."""
        if self.tokens is None:
            return
        if headers.get("Authorization"):
            self._check_token(headers)
            return
        repo = self.repos.get(repo_id)
        if repo is not None and repo.private:
            raise StubError(401, "Repository not found", "RepoNotFound")

    def _repo(self, repo_id: str) -> StubRepo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise StubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _branch(self, repo_id: str, revision: str) -> list[StubCommit]:
        repo = self._repo(repo_id)
        if revision in repo.branches:
            return repo.branches[revision]
        for commits in repo.branches.values():  # a commit sha
            for commit in commits:
                if commit.oid == revision:
                    return commits[: commits.index(commit) + 1]
        raise StubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_oid(self, *parts: str) -> str:
        return hashlib.sha1("\0".join((str(next(self._counter)), *parts)).encode()).hexdigest()

    def _create_repo(self, *, body: bytes):
        payload = _json(body)
        name, org = payload.get("name"), payload.get("organization")
        if payload.get("type", "model") != "model":
            raise StubError(400, "hub_upload_stub only has model repositories")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or \
                not isinstance(org, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", org):
            raise StubError(400, f"Invalid repository name {org}/{name}")
        repo_id = f"{org}/{name}"
        url = f"{self.endpoint}/{repo_id}"
        if repo_id in self.repos:
            return 409, {}, {"error": "You already created this model repo", "url": url}
        visibility = payload.get("visibility")
        initial = StubCommit(self._new_oid(repo_id, "initial commit"), "initial commit", "",
                             {".gitattributes": GITATTRIBUTES}, set(), [".gitattributes"])
        self.repos[repo_id] = StubRepo(repo_id, None if visibility is None else visibility == "private",
                                       {"main": [initial]})
        return 200, {}, {"url": url, "name": repo_id, "id": repo_id}

    def _create_branch(self, repo_id: str, branch: str, *, body: bytes):
        repo = self._repo(repo_id)
        if branch.startswith("refs/") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", branch):
            raise StubError(400, f"Invalid reference for a branch: {branch}")
        if branch in repo.branches:
            raise StubError(409, f"Reference already exists: refs/heads/{branch}")
        start = _json(body).get("startingPoint") or "main"
        repo.branches[branch] = list(self._branch(repo_id, start))
        return 200, {}, {}

    def _refs(self, repo_id: str, **_: Any):
        repo = self._repo(repo_id)
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": commits[-1].oid}
                    for name, commits in repo.branches.items()]
        return 200, {}, {"branches": branches, "tags": [], "converts": []}

    def _repo_info(self, repo_id: str, revision: str = "main", **_: Any):
        repo = self._repo(repo_id)
        head = self._branch(repo_id, revision)[-1]
        return 200, {}, {"id": repo_id, "modelId": repo_id, "sha": head.oid, "private": bool(repo.private),
                         "siblings": [{"rfilename": path} for path in sorted(head.files)]}

    def _repo_info_at(self, repo_id: str, revision: str, **kwargs: Any):
        return self._repo_info(repo_id, revision, **kwargs)

    def _tree_entries(self, commit: StubCommit, folder: str | None, recursive: bool) -> list[dict[str, Any]]:
        """The Hub's tree listing of ``commit`` under ``folder`` (the root if None), sorted by path."""
        prefix = "" if not folder else folder.strip("/") + "/"
        entries: dict[str, dict[str, Any]] = {}
        for path, data in commit.files.items():
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            depth = len(parts) if recursive else 1
            for n in range(1, min(depth, len(parts) - 1) + 1):  # the folders on the way
                sub = prefix + "/".join(parts[:n])
                entries.setdefault(sub, {"type": "directory", "oid": hashlib.sha1(f"tree {commit.oid} {sub}".encode())
                                         .hexdigest(), "size": 0, "path": sub})
            if len(parts) > depth:
                continue
            if path in commit.lfs:
                pointer = lfs_pointer(data)
                entries[path] = {"type": "file", "oid": git_blob_sha1(pointer), "size": len(data), "path": path,
                                 "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                         "pointerSize": len(pointer)}}
            else:
                entries[path] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        return [entries[path] for path in sorted(entries)]

    def _tree(self, repo_id: str, revision: str, folder: str | None, *, query: dict[str, list[str]], **_: Any):
        commit = self._branch(repo_id, revision)[-1]
        recursive = (query.get("recursive") or ["false"])[-1].lower() in ("1", "true")
        entries = self._tree_entries(commit, folder, recursive)
        if folder and not entries:
            raise StubError(404, f"{folder} does not exist on \"{revision}\"", "EntryNotFound")
        start = int((query.get("cursor") or ["0"])[-1])
        page = entries[start:start + self.tree_page_size]
        headers = {}
        if start + self.tree_page_size < len(entries):  # cursor pagination, GitHub-style Link header
            params = {k: v[-1] for k, v in query.items() if k != "cursor"}
            url = (f"{self.endpoint}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
                   + (f"/{quote(folder, safe='')}" if folder else "")
                   + "?" + urlencode({**params, "cursor": start + self.tree_page_size}))
            headers["Link"] = f'<{url}>; rel="next"'
        return 200, headers, page

    def _resolve(self, repo_id: str, revision: str, path: str, *, headers: Any, **_: Any):
        """``/{repo}/resolve/{rev}/{path}`` (HEAD or GET): the file, with the metadata headers that
        huggingface_hub's ``get_hf_file_metadata`` reads. LFS files are served here directly (the Hub redirects
        them to its CDN, with the same ``X-Linked-*`` headers on the redirect)."""
        commit = self._branch(repo_id, revision)[-1]
        data = commit.files.get(path)
        if data is None:
            raise StubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        answer = {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if path in commit.lfs:
            sha256 = hashlib.sha256(data).hexdigest()
            answer.update({"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))})
        else:
            answer["ETag"] = f'"{git_blob_sha1(data)}"'
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", (headers.get("Range") or "").strip())
        if match and data:
            first = int(match.group(1))
            last = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            if first > last:
                raise StubError(416, f"range {headers.get('Range')} outside of {len(data)} bytes",
                                headers={"Content-Range": f"bytes */{len(data)}"})
            answer["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            return 206, answer, data[first:last + 1]
        return 200, answer, data

    def _validate_yaml(self, *, body: bytes):
        content = _json(body).get("content", "")
        match = re.match(r"^---\r?\n(.*?)\r?\n---\r?\n", content, flags=re.S)
        if match:
            import yaml

            try:
                meta = yaml.safe_load(match.group(1))
            except yaml.YAMLError as err:
                return 400, {}, {"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []}
            if meta is not None and not isinstance(meta, dict):
                return 400, {}, {"errors": [{"message": "metadata must be a YAML mapping"}], "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def _agent_harnesses(self, *, body: bytes):
        return 200, {}, {"standardEnvVars": [], "harnesses": {}}  # none known: no agent detected

    def _preupload(self, repo_id: str, revision: str, *, body: bytes):
        tree = self._branch(repo_id, revision)[-1]
        answers = []
        for entry in _json(body).get("files", []):
            path, size = entry["path"], int(entry["size"])
            sample = base64.b64decode(entry.get("sample", ""))
            lfs = _is_lfs_path(path) or size > REGULAR_MAX_SIZE or b"\0" in sample
            oid = None
            if path in tree.files:
                data = tree.files[path]
                oid = hashlib.sha256(data).hexdigest() if path in tree.lfs else git_blob_sha1(data)
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
        return 200, {}, {"files": answers, "commitOid": tree.oid}

    def _lfs_batch(self, repo_id: str, *, body: bytes):
        self._repo(repo_id)
        payload = _json(body)
        if payload.get("operation") != "upload":
            raise StubError(400, "hub_upload_stub only answers LFS uploads")
        ref = (payload.get("ref") or {}).get("name")
        if ref is not None:
            self._branch(repo_id, ref)
        multipart = self.multipart_chunk_size is not None and "multipart" in payload.get("transfers", ())
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.lfs_objects:  # already stored: no actions, the client skips it
                href = f"{self.endpoint}/lfs-upload/{oid}"
                upload: dict[str, Any] = {"href": href}
                if multipart and size > self.multipart_chunk_size:
                    chunk = self.multipart_chunk_size
                    parts = (size + chunk - 1) // chunk
                    upload["header"] = {"chunk_size": str(chunk),
                                        **{str(n): f"{href}/part/{n}" for n in range(1, parts + 1)}}
                answer["actions"] = {"upload": upload, "verify": {"href": f"{self.endpoint}/lfs-verify/{oid}"}}
            objects.append(answer)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, \
            {"transfer": "multipart" if multipart else "basic", "objects": objects}

    def _lfs_put(self, oid: str, *, body: bytes):
        self._store_lfs(oid, body)
        return 200, {}, b""

    def _lfs_put_part(self, oid: str, number: str, *, body: bytes):
        self._parts.setdefault(oid, {})[int(number)] = body
        return 200, {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}, b""

    def _lfs_complete(self, oid: str, *, body: bytes):
        payload = _json(body)
        parts = self._parts.pop(oid, {})
        numbers = [p["partNumber"] for p in payload.get("parts", [])]
        if payload.get("oid") != oid or numbers != sorted(parts) or not numbers:
            raise StubError(400, f"multipart completion of {oid}: parts {numbers}, received {sorted(parts)}")
        for part in payload["parts"]:
            if part["etag"] != f'"{hashlib.md5(parts[part["partNumber"]]).hexdigest()}"':
                raise StubError(400, f"multipart completion of {oid}: wrong etag for part {part['partNumber']}")
        self._store_lfs(oid, b"".join(parts[n] for n in numbers))
        return 200, {}, {}

    def _store_lfs(self, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            raise StubError(400, f"LFS object {oid}: the uploaded content has another sha256")
        self.lfs_objects[oid] = data

    def _lfs_verify(self, oid: str, *, body: bytes):
        payload = _json(body)
        data = self.lfs_objects.get(oid)
        if data is None or payload.get("oid") != oid or payload.get("size") != len(data):
            raise StubError(404, f"LFS object {oid} was not uploaded (or has another size)")
        return 200, {}, {}

    def _commit(self, repo_id: str, revision: str, *, body: bytes):
        repo = self._repo(repo_id)
        if revision not in repo.branches:
            self._branch(repo_id, revision)  # a sha: 404 RevisionNotFound for an unknown one
            raise StubError(400, f"cannot commit to {revision}: not a branch")
        commits = repo.branches[revision]
        parent = commits[-1]
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise StubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != parent.oid:
            raise StubError(412, f"parent commit {header['parentCommit']} is not the head of {revision}")
        files, lfs = dict(parent.files), set(parent.lfs)
        changed, deleted = [], []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/"):
                raise StubError(400, f"invalid path {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise StubError(400, f"{path}: unsupported encoding {value.get('encoding')!r}")
                if _is_lfs_path(path):
                    raise StubError(400, f"Your push was rejected because it contains binary files: {path} must be "
                                         "stored with LFS (Xet)")
                files[path] = base64.b64decode(value["content"])
                lfs.discard(path)
                changed.append(path)
            elif key == "lfsFile":
                data = self.lfs_objects.get(value.get("oid"))
                if data is None or ("size" in value and value["size"] != len(data)):
                    raise StubError(422, f"{path}: LFS object {value.get('oid')} was not uploaded")
                files[path] = data
                lfs.add(path)
                changed.append(path)
            elif key == "deletedFile":
                if path not in files:
                    raise StubError(404, f"{path}: A file with this name doesn't exist", "EntryNotFound")
                del files[path]
                lfs.discard(path)
                deleted.append(path)
            elif key == "deletedFolder":
                gone = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                for p in gone:
                    del files[p]
                    lfs.discard(p)
                deleted.extend(gone)
            else:
                raise StubError(400, f"hub_upload_stub does not implement commit operation {key!r}")
        summary = header.get("summary") or ""
        if not summary.strip():
            raise StubError(400, "the commit message (summary) is empty")
        oid = self._append_commit(repo_id, revision, summary, header.get("description", ""), files, lfs, changed,
                                  deleted).oid
        return 200, {}, {"success": True, "commitOid": oid, "commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}",
                         "hookOutput": "", "pullRequestUrl": None}

    def _append_commit(self, repo_id: str, branch: str, summary: str, description: str, files: dict[str, bytes],
                       lfs: set[str], changed: list[str], deleted: list[str]) -> StubCommit:
        commits = self.repos[repo_id].branches[branch]
        parent = commits[-1]
        oid = self._new_oid(repo_id, branch, parent.oid, summary, *sorted(changed), *sorted(deleted))
        commits.append(StubCommit(oid, summary, description, files, lfs, changed, deleted, parent.oid))
        return commits[-1]


_REPO = r"([^/]+/[^/]+)"
_ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(rf"/api/models/{_REPO}/branch/(.+)"), "create_branch"),
    ("GET", re.compile(rf"/api/models/{_REPO}/refs"), "refs"),
    ("GET", re.compile(rf"/api/models/{_REPO}"), "repo_info"),
    ("GET", re.compile(rf"/api/models/{_REPO}/revision/(.+)"), "repo_info_at"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("GET", re.compile(r"/api/agent-harnesses"), "agent_harnesses"),
    ("POST", re.compile(rf"/api/models/{_REPO}/preupload/(.+)"), "preupload"),
    ("POST", re.compile(rf"/api/models/{_REPO}/commit/(.+)"), "commit"),
    ("POST", re.compile(rf"/{_REPO}\.git/info/lfs/objects/batch"), "lfs_batch"),
    ("PUT", re.compile(r"/lfs-upload/([0-9a-f]{64})"), "lfs_put"),
    ("PUT", re.compile(r"/lfs-upload/([0-9a-f]{64})/part/(\d+)"), "lfs_put_part"),
    ("POST", re.compile(r"/lfs-upload/([0-9a-f]{64})"), "lfs_complete"),
    ("POST", re.compile(r"/lfs-verify/([0-9a-f]{64})"), "lfs_verify"),
    ("GET", re.compile(rf"/api/models/{_REPO}/tree/([^/]+)(?:/(.+))?"), "tree"),
    ("GET", re.compile(rf"/{_REPO}/resolve/([^/]+)/(.+)"), "resolve"),
    ("HEAD", re.compile(rf"/{_REPO}/resolve/([^/]+)/(.+)"), "resolve"),
]
# Writes need a valid token. The pre-signed storage URLs (/lfs-upload, /lfs-verify) carry no token, as on the Hub.
_AUTHENTICATED = {"create_repo", "create_branch", "validate_yaml", "preupload", "commit", "lfs_batch"}
# Reads (first argument: the repository): see HubUploadStub._check_read.
_READ = {"refs", "repo_info", "repo_info_at", "tree", "resolve"}


def _is_lfs_path(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, pattern) for pattern in LFS_PATTERNS)


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise StubError(400, "the request body is not JSON") from None
    if not isinstance(value, dict):
        raise StubError(400, "the request body is not a JSON object")
    return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's pooled client expects
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    stub: HubUploadStub

    def log_message(self, *args) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        path = url.path
        stub = self.stub
        with stub._lock:
            stub.requests.append({"method": self.command, "path": path,
                                  "authorization": self.headers.get("Authorization"),
                                  "user_agent": self.headers.get("User-Agent")})
        headers: dict[str, str] = {}
        try:
            status, headers, payload = stub.handle(self.command, path, parse_qs(url.query), self.headers, body)
        except StubError as err:
            status, payload = err.status, {"error": err.message}
            headers = {**err.headers, "X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
        except Exception as err:  # noqa: BLE001 - a bug in the stub: say so to the client
            status, payload = 500, {"error": f"hub_upload_stub: {type(err).__name__}: {err}"}
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _serve


TOKEN = "hf_stub_write_token"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A started stub that accepts only TOKEN; this process's huggingface_hub pointed at it, no token set."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no saved login
    with HubUploadStub(tokens={TOKEN}) as stub:
        monkeypatch.setenv("HF_ENDPOINT", stub.endpoint)  # what push_folder and download read (hub_settings)
        # the rest of the client; file URLs are built from the template and the endpoint swapped in only where
        # they start with ENDPOINT: patch both alike, as an import with HF_ENDPOINT set would have made them
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", stub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            stub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        # the client's agent-registry cache was placed under the real HF_HOME at import: keep it out of there
        monkeypatch.setattr(huggingface_hub.constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
        yield stub
        assert stub.unhandled == [], "huggingface_hub called endpoints the stub does not implement"
