"""The Ray Data engine (``engine="ray"``, ``--engine ray``) on a real Ray cluster of two nodes with
one CPU each, started on this machine by Ray's own ``cluster_utils.Cluster`` (a head and a second
node, as a cluster looks): its outputs equal one process's, it resumes a torchrun job's units and
torchrun resumes its units, a model actor killed mid-job loses and duplicates no row, and the
decode tasks run on both nodes. One cluster serves the module (started once: ~5 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import warm_python
from click.testing import CliRunner
from hostile_videos import write_video

import tclr_zoo
from tclr_zoo import cli
from tclr_zoo.data.decode import VideoDecodeError
from tclr_zoo.inference.corpus import embed_corpus, read_embeddings
from tclr_zoo.inference.ray_engine import RayOptions, decode_tasks
from tclr_zoo.inference.shards import shard_folder

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tclr-zoo[ray]'; the dev extra has it)")

# Another batch composition sums floats in another order (one process: 3e-8 apart, tests/cli/test_torchrun.py).
TOLERANCE = 1e-5
# Half a CPU per actor and per decode task: on the two 1-CPU nodes, one actor and three decode tasks fit.
HALF = RayOptions(actor_cpus=0.5, decode_cpus=0.5)
HALF_FLAGS = ["--engine", "ray", "--ray-actor-cpus", "0.5", "--ray-decode-cpus", "0.5"]
RESUME = """\
import os, sys
from tclr_zoo.inference.corpus import embed_corpus

saved, out, skip, *paths = sys.argv[1:]
result = embed_corpus(saved, paths, out=out, unit_videos=2, resume=skip == "resume", skip_bad=skip == "resume",
                      workers=0, device="cpu")
print(f"rank {os.environ['RANK']}: {'None' if result is None else len(result)}")
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second node, 1 CPU each; this process joins it (``RAY_ADDRESS`` for the CLI's)."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        nodes = {"num_cpus": 1, "object_store_memory": 150 * 2**20}
        cluster = Cluster(initialize_head=True, head_node_args={**nodes, "include_dashboard": False})
        cluster.add_node(**nodes)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        patch.setenv("RAY_ADDRESS", cluster.address)
        try:
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    """5 real H.264 files of one or two windows and a broken one, 4th in sorted order."""
    folder = tmp_path_factory.mktemp("ray-videos")
    for i in range(5):
        write_video(folder / f"v{i}.mp4", 24 + 6 * i)
    (folder / "v2_broken.mp4").write_bytes(os.urandom(2000))
    return sorted(str(p) for p in folder.iterdir())


@pytest.fixture(scope="module")
def straight(saved, videos):
    """What one process gives, per video and per window."""
    model = tclr_zoo.load_model(saved, device="cpu")
    return embed_corpus(model, videos, skip_bad=True, workers=0)


def same_rows(got, expected) -> None:
    assert got.ids == expected.ids and got.paths == expected.paths
    assert got.starts == expected.starts and got.ends == expected.ends
    assert got.skipped == expected.skipped
    torch.testing.assert_close(got.embeddings, expected.embeddings, atol=TOLERANCE, rtol=0)


def invoke(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_embed_and_index_build_on_ray_write_what_one_process_writes_decoding_on_both_nodes(
        cluster, saved, videos, straight, tmp_path):
    # a real command line, joining the cluster through RAY_ADDRESS
    run = warm_python.run_cli(["embed", saved, *videos, "--out", tmp_path / "ray.npy", "--skip-bad", "--no-progress",
                               *HALF_FLAGS], timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [entry for entry in run.stderr.splitlines() if entry.startswith("ray: decoded")]
    # the decode tasks ran on both nodes: the node ids the rows carry are those in Ray's own record of its nodes
    nodes = {node["NodeID"][:8] for node in ray.nodes() if node["Alive"]}
    counts = dict(item.split(" on ")[::-1] for item in line.split("(")[1].rstrip(")").split(", "))
    assert len(nodes) == 2 and set(counts) == nodes and sum(map(int, counts.values())) == len(videos), line
    same_rows(read_embeddings(tmp_path / "ray.npy"), straight)
    # index build per window: ids, order, window times and skipped files as one process's build
    for engine in (["--workers", "0"], HALF_FLAGS):
        code, stdout, stderr = invoke("index", "build", saved, *videos, "--out", tmp_path / engine[0], "--windows",
                                      "--skip-bad", "--no-progress", *engine)
        assert code == 0 and (stdout + stderr).count(videos[3]) == 1, stderr  # the skipped file, said once
    local, on_ray = (tclr_zoo.VideoIndex.load(tmp_path / name) for name in ("--workers", "--engine"))
    assert on_ray.ids == local.ids and len(local.ids) > 6  # windows: more rows than videos
    assert (on_ray.starts, on_ray.ends, on_ray.paths) == (local.starts, local.ends, local.paths)
    torch.testing.assert_close(on_ray.embeddings.float(), local.embeddings.float(), atol=TOLERANCE, rtol=0)
    manifest = json.loads((tmp_path / "--engine" / "manifest.json").read_text())
    assert manifest["model_identity"] == tclr_zoo.load_model(saved).identity


def _torchrun(script: Path, *args) -> subprocess.CompletedProcess:
    from hub_server import free_port

    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(free_port()), str(script), *map(str, args)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)


def test_ray_resumes_a_torchrun_jobs_units_and_torchrun_resumes_a_ray_jobs(cluster, saved, videos, straight,
                                                                            tmp_path):
    script = tmp_path / "job.py"
    script.write_text(RESUME)
    # torchrun, 2 processes, stops at the broken video (unit 1, rank 1): rank 0's units are kept
    first = tmp_path / "first.safetensors"
    assert _torchrun(script, saved, first, "stop", *videos).returncode != 0
    kept = sorted(p.name for p in shard_folder(first).glob("unit-*"))
    assert "unit-000000.safetensors" in kept and "unit-000001.safetensors" not in kept
    log = []
    done = embed_corpus(saved, videos, out=first, unit_videos=2, resume=True, skip_bad=True, engine="ray", ray=HALF,
                        log=log.append)
    assert done.resumed == 2 * len(kept) and log[0].startswith(f"resuming: {len(kept)} finished units")
    same_rows(read_embeddings(first), straight)
    # the reverse: Ray stops at the broken video, torchrun continues from its units
    second = tmp_path / "second.safetensors"
    with pytest.raises(VideoDecodeError, match="v2_broken.mp4"):
        embed_corpus(saved, videos, out=second, unit_videos=2, engine="ray", ray=HALF)
    assert sorted(p.name for p in shard_folder(second).glob("unit-*")) == ["unit-000000.safetensors"]
    run = _torchrun(script, saved, second, "resume", *videos)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.stdout.splitlines()) == ["rank 0: 5", "rank 1: None"]
    same_rows(read_embeddings(second), straight)


def _busy_actors() -> set[int]:
    """The model actors running a call now, by the title Ray gives their processes."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(BUSY_ACTOR):
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


BUSY_ACTOR = b"ray::MapWorker(MapBatches(_Embedder)).submit"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the actor's process in /proc")
def test_a_model_actor_killed_mid_job_loses_and_duplicates_no_row(cluster, saved, videos, straight, tmp_path):
    out = tmp_path / "e.safetensors"
    killed: list[int] = []

    def kill_the_actor_in_a_call() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for pid in _busy_actors():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_actor_in_a_call, daemon=True)
    killer.start()
    # one video per call and per unit: the kill lands in one of six calls, units saved before and after it
    got = embed_corpus(saved, videos, out=out, unit_videos=1, skip_bad=True, engine="ray",
                       ray=RayOptions(actor_cpus=0.5, decode_cpus=0.5, videos_per_call=1))
    killer.join(timeout=10)
    assert killed, "no actor process was found in a call"
    assert not shard_folder(out).exists()
    same_rows(got, straight)
    same_rows(read_embeddings(out), straight)


def test_the_engine_options_are_checked_before_any_work(saved, videos, tmp_path, monkeypatch):
    code, _, stderr = invoke("embed", saved, videos[0], "--out", tmp_path / "e.npy", "--ray-actors", "2",
                             "--ray-videos-per-task", "1")
    assert code == 2 and "--ray-actors, --ray-videos-per-task: options of the Ray engine; add --engine ray" in stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    code, _, stderr = invoke("embed", saved, videos[0], "--out", tmp_path / "e.npy", "--engine", "ray")
    assert code == 2 and stderr.count("\n") == 1 and "pip install 'tclr-zoo[ray]'" in stderr, stderr
    assert not (tmp_path / "e.npy").exists()


def test_decode_tasks_take_a_few_videos_each_but_spread_a_short_job_over_the_cluster():
    assert decode_tasks(192, 4, cpus=2) == 48  # 4 videos per task
    assert decode_tasks(6, 4, cpus=2) == 4  # two tasks per CPU: both nodes of a 2-CPU cluster get some
    assert decode_tasks(3, 4, cpus=2) == 3 and decode_tasks(1, 4, cpus=64) == 1  # never more tasks than videos
    assert decode_tasks(100, 1, cpus=2) == 100
