"""Publishing: ``push_folder`` and the ``push`` / ``convert`` commands, with the real huggingface_hub client.

The public Hub cannot be reached from here, so uploads go to ``hub_upload_stub``, a loopback stand-in
for the Hub's upload API (repository and branch creation, preupload, git-LFS batch and upload, ndjson
commits) that records what arrived, and serves it back to ``download`` (repository info, tree listing,
resolve). Large files (``*.safetensors``, ``*.onnx``) take the LFS path; huggingface_hub would use the
Xet protocol for them when ``hf_xet`` is installed, which the stub does not speak, so the client runs with
``HF_HUB_DISABLE_XET`` (read once, at import). The commands run as real subprocesses, several at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import huggingface_hub.constants
import pytest
import reference_net
import torch
import warm_python
from hub_upload_stub import GITATTRIBUTES, TOKEN, HubUploadStub
from safetensors.torch import load as load_safetensors

import tclr_zoo
from tclr_zoo import __version__
from tclr_zoo.export.exporter import export_model
from tclr_zoo.hub.client import PICKLE_PATTERNS, HubError, download, push_folder

ARCH = "r3d_10_025"
CLI = warm_python.CLI
MODEL_FILES = ("config.json", "model.safetensors", "README.md")
# huggingface_hub's endpoint constants as imported (before any fixture): what a process gets that imported it
# before HF_ENDPOINT was set, e.g. CLI commands run in-process by click's CliRunner
IMPORTED_ENDPOINT = (huggingface_hub.constants.ENDPOINT, huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return tclr_zoo.load_model(ARCH, pretrained=False).save_pretrained(tmp_path_factory.mktemp("push") / "saved")


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("push-export") / "export"
    export_model(saved, out, onnx=True, max_batch=1, opset=17)  # opset 17: the faster TorchScript exporter
    return out


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def listing(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def api_requests(stub: HubUploadStub) -> list[dict]:
    """The upload API requests; not the LFS storage URLs, which carry no token (as on the Hub), nor the
    agent registry that huggingface_hub fetches once per process for its User-Agent."""
    return [r for r in stub.requests
            if not r["path"].startswith(("/lfs-upload/", "/lfs-verify/", "/api/agent-harnesses"))]


# ------------------------------------------------------------------------------------------------ push_folder


def test_push_folder_uploads_model_files_byte_for_byte_and_never_pickles(hub, exported, tmp_path):
    folder = copy_folder(exported, tmp_path / "my-export")
    expected = listing(folder)
    assert {"onnx/model.onnx", *MODEL_FILES} <= set(expected)
    # pickles: outside the allowed files, and inside onnx/ (allowed) where only the ignore patterns keep them out
    pickles = ["training_state.pt", "pytorch_model.bin", *(f"onnx/weights{p[1:]}" for p in PICKLE_PATTERNS)]
    for name in pickles:
        torch.save({"w": torch.zeros(4)}, folder / name)
    (folder / "notes.txt").write_text("not part of a model")
    (folder / "extra").mkdir()
    (folder / "extra" / "config.json").write_text("{}")

    url = push_folder(folder, "org/model", private=True, token=TOKEN)

    commits = hub.commits("org/model")
    head = commits[-1]
    assert len(commits) == 2  # the repository's initial commit, then ours
    assert url == f"{hub.endpoint}/org/model/commit/{head.oid}" and url.rsplit("/", 1)[-1] == head.oid
    assert sorted(head.changed) == sorted(expected)
    assert hub.files("org/model") == {".gitattributes": GITATTRIBUTES, **expected}
    assert head.lfs == {"model.safetensors", "onnx/model.onnx"}  # the rest went inline, as regular files
    assert head.message == f"Upload my-export with tclr-zoo {__version__}"
    assert hub.repos["org/model"].private is True
    requests = api_requests(hub)
    assert [r["path"] for r in requests][:1] == ["/api/repos/create"]
    assert "/org/model.git/info/lfs/objects/batch" in hub.paths("POST")
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in requests)
    assert all(f"tclr_zoo/{__version__}" in r["user_agent"] for r in requests)


def test_push_folder_to_a_branch_with_a_message(hub, saved, tmp_path):
    first = push_folder(saved, "hf-hub:org/model", token=TOKEN)
    main = hub.head("org/model")
    assert first.endswith(f"/org/model/commit/{main.oid}") and hub.repos["org/model"].private is False
    assert main.message == f"Upload saved with tclr-zoo {__version__}"

    changed = copy_folder(saved, tmp_path / "retrained")
    (changed / "README.md").write_text((saved / "README.md").read_text() + "\nRetrained.\n")
    url = push_folder(changed, "org/model", revision="v2", commit_message="retrained", token=TOKEN)
    v2 = hub.head("org/model", "v2")
    assert url == f"{hub.endpoint}/org/model/commit/{v2.oid}"
    assert "/api/models/org/model/branch/v2" in hub.paths("POST")
    assert (v2.message, v2.parent, v2.changed) == ("retrained", main.oid, ["README.md"])  # unchanged files skipped
    assert hub.files("org/model", "v2") == {".gitattributes": GITATTRIBUTES, **listing(changed)}
    assert hub.head("org/model") is main and hub.files("org/model")["README.md"] == (saved / "README.md").read_bytes()

    # pushing the same folder again changes nothing (no empty commit); the URL names the branch head
    again = push_folder(changed, "org/model", revision="v2", commit_message="again", token=TOKEN)
    assert again == url and hub.head("org/model", "v2") is v2


def test_push_folder_without_create_needs_the_repository_and_the_branch(hub, saved, tmp_path):
    with pytest.raises(HubError) as err:
        push_folder(saved, "org/missing", create=False, token=TOKEN)
    assert str(err.value).startswith(f"org/missing not found on {hub.endpoint}")
    assert hub.repos == {} and "/api/repos/create" not in hub.paths()

    push_folder(saved, "org/model", token=TOKEN)
    with pytest.raises(HubError, match=f"org/model: branch 'nope' does not exist on {hub.endpoint}"):
        push_folder(saved, "org/model", revision="nope", create=False, token=TOKEN)
    assert set(hub.repos["org/model"].branches) == {"main"}

    changed = copy_folder(saved, tmp_path / "changed")
    (changed / "config.json").write_text(json.dumps({**json.loads((saved / "config.json").read_text()), "x": 1}))
    before = len(hub.requests)
    url = push_folder(changed, "org/model", create=False, commit_message="edit config", token=TOKEN)
    assert url.endswith(hub.head("org/model").oid) and hub.head("org/model").changed == ["config.json"]
    assert not any("/api/repos/create" in p or "/branch/" in p for p in hub.paths()[before:])


def test_push_folder_refusals(hub, saved, tmp_path, monkeypatch):
    with pytest.raises(HubError, match="'no-slash': not a Hub repository name; expected ORG/REPO"):
        push_folder(saved, "no-slash", token=TOKEN)
    with pytest.raises(HubError, match="not a Hub repository name"):
        push_folder(saved, "org/../repo", token=TOKEN)
    with pytest.raises(HubError, match="no such folder to push"):
        push_folder(tmp_path / "absent", "org/model", token=TOKEN)
    for name in ("config.json", "model.safetensors"):
        partial = copy_folder(saved, tmp_path / f"without-{name}")
        (partial / name).unlink()
        with pytest.raises(HubError, match=f"no {name}; push a folder written by save_pretrained"):
            push_folder(partial, "org/model", token=TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match=r"cannot push org/model: offline mode is on \(HF_HUB_OFFLINE=1\)"):
        push_folder(saved, "org/model", token=TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub.requests == []  # all refused before anything was sent

    for token in (None, "hf_wrong"):
        with pytest.raises(HubError) as err:
            push_folder(saved, "org/model", token=token)
        assert str(err.value).startswith(f"not allowed to push to org/model on {hub.endpoint} (401)")
        assert "HF_TOKEN" in str(err.value)
    assert hub.repos == {}

    # metadata the Hub refuses: a HubError, not a raw ValueError, and nothing committed
    bad_card = copy_folder(saved, tmp_path / "bad-card")
    (bad_card / "README.md").write_text("---\n- not\n- a mapping\n---\n# card\n")
    with pytest.raises(HubError) as err:
        push_folder(bad_card, "org/model", token=TOKEN)
    assert str(err.value) == (f"push of {bad_card} to org/model refused: Invalid metadata in README.md. "
                              "- metadata must be a YAML mapping")
    assert len(hub.commits("org/model")) == 1  # the repository was created, nothing was committed


# ------------------------------------------------------------------------------------------------ download


def test_download_gets_what_was_pushed_at_each_commit_and_never_pickles(hub, saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # read at call time, like HF_ENDPOINT: sent with the reads too
    folder = copy_folder(saved, tmp_path / "model")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"\x08\x07not a graph\x00" * 64)  # a nested path, stored with LFS
    first = push_folder(folder, "org/model").rsplit("/", 1)[-1]
    first_files = listing(folder)
    # pickles committed behind the client's back, beside the model and inside onnx/ (an allowed folder)
    pickles = {"training_state.pt": b"\x80\x04pickled", "onnx/weights.pt": b"\x80\x04pickled too"}
    hub.commit_files("org/model", pickles, message="add pickles")
    (folder / "README.md").write_text(first_files["README.md"].decode() + "\nRetrained.\n")
    head = push_folder(folder, "org/model").rsplit("/", 1)[-1]
    assert head == hub.head("org/model").oid and len(hub.commits("org/model")) == 4
    assert set(pickles) <= set(hub.files("org/model"))

    snapshot, commit = download("org/model", progress=False)
    assert commit == head and snapshot == (tmp_path / "hub-cache" / "models--org--model" / "snapshots" / head).resolve()
    assert listing(snapshot) == listing(folder)  # byte for byte: no pickle, no .gitattributes
    assert {"/org/model/resolve/" + head + "/" + p for p in listing(folder)} <= set(hub.paths("GET"))
    assert not any(p.endswith(".pt") for p in hub.paths())  # not even asked about
    model = tclr_zoo.load_model(f"hf-hub:org/model@{commit}")  # from the cache
    assert (model.model_id, model.revision) == ("hf-hub:org/model", head)

    # the older commit, pinned, and anonymously (a public repository), with huggingface_hub's constants as imported
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", IMPORTED_ENDPOINT[0])
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", IMPORTED_ENDPOINT[1])
    before = len(hub.requests)
    old, old_commit = download("org/model", first, progress=False)
    assert old_commit == first and old.name == first and listing(old) == first_files
    assert (old / "README.md").read_bytes() != (snapshot / "README.md").read_bytes()
    assert all(r["authorization"] is None for r in hub.requests[before:])

    # what the Hub answers for unknown revisions and repositories, in hub.client's words
    with pytest.raises(HubError, match=r"org/model: revision 'nope' not found on .* \(branches and tags: main\)"):
        download("org/model", "nope", progress=False)
    with pytest.raises(HubError, match=f"org/model: revision '{'0' * 40}' not found"):
        download("org/model", "0" * 40, progress=False)
    with pytest.raises(HubError, match=f"repository org/missing not found on {hub.endpoint}"):
        download("org/missing", progress=False)


# ------------------------------------------------------------------------------------------------ commands


def _cli_env(tmp_path: Path, endpoint: str, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HF_") and k not in ("TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1")
    if token is not None:
        env["HF_TOKEN"] = token
    return env


class _Cli:
    """A ``tclr-zoo`` subprocess writing to files (several may run at once: imports take seconds each)."""

    def __init__(self, args: list[str], cwd: Path, name: str, env: dict[str, str] | None = None):
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = warm_python.start(CLI + args, cwd=cwd, env=env or os.environ.copy(), stdout=out, stderr=err)

    def result(self, timeout: float = 240) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return code, self.out.read_text(), self.err.read_text()


def _one_error_line(stderr: str, start: str) -> None:
    assert stderr.startswith(f"tclr-zoo: error: {start}"), stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n") and "Traceback" not in stderr, stderr


def test_cli_push_uploads_an_export(exported, tmp_path):
    # the multipart LFS transfer here (the Hub's for large files); push_folder's tests use the single PUT
    with HubUploadStub(tokens={TOKEN}, multipart_chunk_size=1 << 20) as stub:
        ok = _Cli(["push", str(exported), "org/cli-model", "--revision", "v1", "--message", "first release",
                   "--private"], tmp_path, "ok", _cli_env(tmp_path, stub.endpoint, TOKEN))
        refused = _Cli(["push", str(exported), "org/other"], tmp_path, "refused",
                       _cli_env(tmp_path, stub.endpoint, "hf_wrong"))
        code, out, err = ok.result()
        assert code == 0, err
        head = stub.head("org/cli-model", "v1")
        assert out == f"pushed {exported} -> {stub.endpoint}/org/cli-model/commit/{head.oid}\n"
        assert head.message == "first release" and stub.repos["org/cli-model"].private is True
        assert len(stub.commits("org/cli-model")) == 1 and head.parent == stub.head("org/cli-model").oid
        files = stub.files("org/cli-model", "v1")
        onnx = {p: data for p, data in listing(exported).items() if p.startswith("onnx/")}
        assert set(files) == {".gitattributes", *MODEL_FILES, *onnx}
        assert all(files[p] == data for p, data in onnx.items())  # the exported graphs, byte for byte
        # the command re-saves the loaded model: the same tensors and config, a card naming the new repository
        source_weights = load_safetensors((exported / "model.safetensors").read_bytes())
        pushed_weights = load_safetensors(files["model.safetensors"])
        assert source_weights.keys() == pushed_weights.keys()
        assert all(torch.equal(source_weights[k], pushed_weights[k]) for k in source_weights)
        pushed_config = json.loads(files["config.json"])
        source_config = json.loads((exported / "config.json").read_text())
        assert pushed_config.pop("weights_sha256") == hashlib.sha256(files["model.safetensors"]).hexdigest()
        assert pushed_config == {k: v for k, v in source_config.items() if k != "weights_sha256"}
        assert "hf-hub:org/cli-model" in files["README.md"].decode()
        assert any("/part/" in p for p in stub.paths("PUT"))
        assert all(r["authorization"] == f"Bearer {TOKEN}" for r in api_requests(stub) if "cli-model" in r["path"])

        code, out, err = refused.result()
        assert (code, out) == (2, "")
        _one_error_line(err, f"not allowed to push to org/other on {stub.endpoint} (401)")
        assert "org/other" not in stub.repos and stub.unhandled == []


def test_cli_convert_reference_checkpoint(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    ref = tmp_path / "r3d_18_best.pth"
    refused = _Cli(["convert", str(ref), str(full), "--arch", "r3d_18"], tmp_path, "refused")  # refused before reading
    net = reference_net.build("r3d_18", seed=3)
    reference_net.save_checkpoint(ref, net, torch19_names=True, best_score=True)
    # --no-check: the comparison with the reference network (tens of seconds on a small CPU) is test_convert's
    ok = _Cli(["convert", str(ref), "converted", "--arch", "r3d_18", "--no-check"], tmp_path, "ok")

    code, out, err = refused.result()
    assert (code, out) == (2, "")
    _one_error_line(err, f"{full}: folder exists and is not empty; choose another name or pass --overwrite")
    assert listing(full) == {"keep.txt": b"mine"}

    code, out, err = ok.result()
    assert code == 0, err
    assert out == f"converted {ref} (r3d_18) -> converted: not checked (--no-check)\n"
    out_dir = tmp_path / "converted"
    assert sorted(listing(out_dir)) == sorted(MODEL_FILES)
    model = tclr_zoo.load_model(out_dir)
    assert model.config["architecture"] == "r3d_18" and model.config["source"]["file"] == ref.name
    assert model.config["source"]["sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    weights = model.torch_model.state_dict()
    for name, value in net.state_dict().items():
        mapped = ("backbone." if name.startswith("0.") else "projection.") + name[2:]
        assert torch.equal(weights[mapped], value), name
