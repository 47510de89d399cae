"""load_model from a real Hub endpoint on loopback (olah serving local git repos, see hub_server).

The models are small (r3d_10_025) but real: saved and exported by the library, published as git
commits, downloaded by huggingface_hub and run on real H.264 clips.
"""

from __future__ import annotations

import os
import uuid

import huggingface_hub.constants
import pytest
import torch
import warm_python
from real_videos import real_video

import tclr_zoo
from tclr_zoo.export.exporter import export_model
from tclr_zoo.hub.client import HubError
from tclr_zoo.models import pretrained

ARCH = "r3d_10_025"


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch, local_hub):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two exported models (different weights): the published commits A and B."""
    root = tmp_path_factory.mktemp("hub-models")
    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        saved = tclr_zoo.load_model(ARCH, pretrained=False).save_pretrained(root / f"saved-{seed}")
        export_model(saved, root / f"export-{seed}", onnx=True, max_batch=2)
        folders.append(root / f"export-{seed}")
    return folders


def new_repo() -> str:
    return f"tclr-test/sdk-{uuid.uuid4().hex[:8]}"


def test_hub_and_saved_folder_give_the_same_vector(local_hub, exported):
    repo = new_repo()
    sha = local_hub.publish(exported[0], repo)
    from_hub = tclr_zoo.load_model(f"hf-hub:{repo}")
    assert from_hub.model_id == f"hf-hub:{repo}" and from_hub.revision == sha
    clip = real_video("carphone_pristine.mp4")
    torch.testing.assert_close(from_hub.embed(clip), tclr_zoo.load_model(exported[0]).embed(clip), rtol=0, atol=0)
    onnx = tclr_zoo.load_model(f"hf-hub:{repo}", backend="onnx")
    assert (onnx.embed(clip) - from_hub.embed(clip)).abs().max() < 1e-4


def test_revision_pinning_and_offline_reuse(local_hub, exported, monkeypatch):
    repo = new_repo()
    sha_a = local_hub.publish(exported[0], repo)
    sha_b = local_hub.publish(exported[1], repo)
    clip = torch.rand(1, 3, 16, 112, 112)
    pinned = tclr_zoo.load_model(f"hf-hub:{repo}@{sha_a}")
    latest = tclr_zoo.load_model(f"hf-hub:{repo}")
    assert (pinned.revision, latest.revision) == (sha_a, sha_b)
    torch.testing.assert_close(pinned.embed(clip), tclr_zoo.load_model(exported[0]).embed(clip), rtol=0, atol=0)
    assert not torch.allclose(pinned.embed(clip), latest.embed(clip))

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may be asked of the network
    again = tclr_zoo.load_model(f"hf-hub:{repo}@{sha_a}")
    torch.testing.assert_close(again.embed(clip), pinned.embed(clip), rtol=0, atol=0)
    with pytest.raises(HubError, match=r"tclr-test/never-fetched.*tclr-zoo download"):
        tclr_zoo.load_model("hf-hub:tclr-test/never-fetched")


def test_missing_repo_and_wrong_revision_are_one_clear_error(local_hub, exported):
    repo = new_repo()
    local_hub.publish(exported[0], repo)
    with pytest.raises(HubError, match="tclr-test/does-not-exist"):
        tclr_zoo.load_model("hf-hub:tclr-test/does-not-exist")
    with pytest.raises(HubError, match="no-such-branch"):
        tclr_zoo.load_model(f"hf-hub:{repo}@no-such-branch")


def test_registry_name_resolves_to_the_configured_organisation(local_hub, exported, monkeypatch):
    repo = new_repo()
    local_hub.publish(exported[1], repo)
    org, name = repo.split("/")
    spec = pretrained.PretrainedSpec(f"{ARCH}.test", name, "synthetic", "test entry")
    monkeypatch.setitem(pretrained._PRETRAINED, spec.name, spec)
    monkeypatch.setenv(pretrained.ORG_ENV, org)
    model = tclr_zoo.load_model(f"{ARCH}.test")
    assert model.model_id == f"hf-hub:{repo}"
    clip = torch.rand(1, 3, 16, 112, 112)
    torch.testing.assert_close(model.embed(clip), tclr_zoo.load_model(exported[1]).embed(clip), rtol=0, atol=0)


def test_cli_download_seeds_the_cache_for_offline_machines(local_hub, exported, tmp_path):
    repo = new_repo()
    sha = local_hub.publish(exported[0], repo)
    env = {**os.environ, "HF_HOME": str(tmp_path / "seeded"), "HF_HUB_CACHE": str(tmp_path / "seeded" / "hub")}
    got = warm_python.run_cli(["download", f"hf-hub:{repo}"], env=env, timeout=120)
    assert got.returncode == 0, got.stderr
    assert sha in got.stdout
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    info = warm_python.run_cli(["info", f"hf-hub:{repo}"], env=offline, timeout=120)
    assert info.returncode == 0, info.stderr
    assert f"hf-hub:{repo} @ {sha}" in info.stdout and "onnx/model.onnx" in info.stdout
    missing = warm_python.run_cli(["info", "hf-hub:tclr-test/not-cached"], env=offline, timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "tclr-test/not-cached" in missing.stderr and "Traceback" not in missing.stderr
