"""The README's shell and Python snippets, run in README order, so that docs and code cannot drift
apart.

The working directory stands for a checkout after ``make demo``:

- ``runs/demo`` is a tiny run of the demo recipe (one epoch on the tiny synthetic set of conftest);
- ``/data/UCF101`` and ``/data/HMDB51`` are tiny generated datasets in those layouts;
- ``a.mp4``, ``b.mp4``, ``long.mp4``, ``query.mp4`` and ``videos/`` are generated videos, and
  ``r3d18_ucf101_best.pth`` a checkpoint in the authors' format (tests/helpers/reference_net.py);
- the Hub is the local stand-in of tests/helpers/hub_upload_stub.py (push, then download of what was pushed).

Commands are changed only by the tables below: SUBSTITUTIONS (placeholders and sizes written in the
README) and SCALE_DOWN (settings a command does not write, added to fit the test budget: tiny
network, one epoch). Each command runs in-process through click's runner -- the real parser and
command; the CLI's subprocess tests are elsewhere -- and must exit 0. Every command line of the
README is either run or skipped by SKIPPED with its reason, so a new one cannot slip through.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import reference_net
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, tiny_overrides
from hostile_videos import write_video
from hub_upload_stub import TOKEN

from tclr_zoo import cli
from tclr_zoo.data.synthetic import SyntheticConfig, generate

README = Path(__file__).resolve().parents[1] / "README.md"
SKIPPED = {
    "make demo": "the working directory stands for its result (runs/demo is a tiny demo-recipe run)",
    "make test": "this test is part of make test",
    ".venv/bin/tclr-zoo export runs/demo/model --out exports/demo-int8": "calibrates on a dataset root this "
        "checkout lacks; tests/export/test_quantize.py runs the same export on the tiny synthetic dataset",
    ".venv/bin/tclr-zoo app": "serves until stopped; tests/app/test_app_cli.py starts it and "
                              "tests/app/test_app_browser.py drives its page",
    "pip install": "installs packages; the dev extra that make test installs has Ray",
    "ray start": "starts a Ray cluster node; tests/inference/test_ray_engine.py starts a two-node cluster",
    "export RAY_ADDRESS": "points at that cluster",
    "tclr-zoo embed hf-hub:ORG/REPO /shared/videos": "runs on a Ray cluster; tests/inference/test_ray_engine.py runs "
                                                    "embed and index build with --engine ray on a two-node cluster",
    "tclr-zoo index build runs/demo/model /shared/videos": "runs on a Ray cluster (see above)",
    "torchrun": "needs 8 GPUs on one or more nodes; tests/train/test_distributed.py (pretrain) and "
                "tests/cli/test_torchrun.py (embed, index build) run torchrun with 2 CPU processes",
}
# README text -> what the test runs (placeholders and sizes the README writes out)
SUBSTITUTIONS = {
    "train.epochs=30": "train.epochs=2",  # 30 tiny epochs would take a minute
    "--set epochs=100 --set batch_size=32": "--set epochs=1 --set batch_size=4",  # 12 training videos
}
# settings a README command leaves unset, added unless the command sets them itself
SCALE_DOWN = {
    "pretrain": None,  # conftest.tiny_overrides (r3d_10_025 at 32 px, one epoch, batch 4) + the two below
    "eval": {"epochs": 1, "batch_size": 4, "test_clips": 2, "workers": 0},
    "finetune": {"settings.epochs": 1, "settings.batch_size": 4, "settings.size": 32, "settings.test_clips": 2,
                 "settings.workers": 0},
}
PRETRAIN_EXTRA = {"model.arch": "r3d_10_025", "model.bn_mode": "faithful"}


def snippets() -> list[tuple[str, int, str]]:
    """``(language, line number, text)`` of each README code block, in order."""
    text = README.read_text()
    return [(m["lang"], text[:m.start()].count("\n") + 2, m["body"])
            for m in re.finditer(r"```(?P<lang>\w+)\n(?P<body>.*?)```", text, re.S)]


def commands(body: str) -> list[str]:
    """The command lines of a shell snippet (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line for line in (shlex.join(shlex.split(raw, comments=True)) for raw in joined.splitlines()) if line]


def scaled(argv: list[str], dataset: Path) -> list[str]:
    command = argv[0]
    if command not in SCALE_DOWN:
        return argv
    given = {a.split("=", 1)[0] for a, flag in zip(argv[1:], argv) if flag == "--set"}
    extra = SCALE_DOWN[command]
    if extra is None:
        extra = dict(kv.split("=", 1) for kv in tiny_overrides(dataset)) | PRETRAIN_EXTRA
    if command == "eval" and "retrieval" in argv:
        extra = {}
    return argv + [a for key, value in extra.items() if key not in given for a in ("--set", f"{key}={value}")]


@pytest.fixture
def checkout(tmp_path, tiny_dataset, tiny_run, monkeypatch) -> dict[str, str]:
    """Make the working directory of a checkout after `make demo` (see the module docstring) the current
    one; returns the dataset paths that stand for the README's /data/... folders."""
    work = tmp_path / "checkout"
    shutil.copytree(tiny_run, work / "runs" / "demo")
    (work / "recipes").symlink_to(README.parent / "recipes")
    (work / "videos").mkdir()
    for name, frames in (("a.mp4", 24), ("b.mp4", 32), ("query.mp4", 28), ("long.mp4", 90),
                         ("videos/clip.mp4", 30), ("videos/other.mp4", 26)):
        write_video(work / name, frames)
    reference_net.save_checkpoint(work / "r3d18_ucf101_best.pth", reference_net.build("r3d_18", seed=1))
    hmdb = generate(tmp_path / "hmdb51", SyntheticConfig(**TINY_SYNTHETIC, layout="hmdb51"))
    monkeypatch.chdir(work)
    return {"/data/UCF101": str(tiny_dataset), "/data/HMDB51": str(hmdb)}


def test_every_readme_snippet_runs(checkout, tiny_dataset, hub, monkeypatch):  # noqa: F811 (fixture)
    work = Path.cwd()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    ran, skipped = [], []
    for lang, line, body in snippets():
        if lang == "python":
            exec(compile(body, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
            ran.append(f"python block at line {line}")
            continue
        for command in commands(body):
            reason = next((why for start, why in SKIPPED.items() if command.startswith(start)), None)
            if reason is not None:
                skipped.append((command, reason))
                continue
            for old, new in {**SUBSTITUTIONS, **checkout}.items():
                command = command.replace(old, new)
            argv = shlex.split(command)
            assert argv[0] in (".venv/bin/tclr-zoo", "tclr-zoo"), f"README.md:{line}: not a tclr-zoo command: {command}"
            result = CliRunner().invoke(cli.main, scaled(argv[1:], tiny_dataset), catch_exceptions=True)
            assert result.exit_code == 0, (f"README.md:{line}: {command}\n{result.output}\n"
                                           f"{result.exception!r}")
            ran.append(command)
    # what the commands claim to have made is there
    assert (work / "exports" / "demo" / "onnx" / "model.fp16.onnx").is_file()
    assert (work / "videos-index" / "manifest.json").is_file() and (work / "query-neighbours.png").is_file()
    assert set(hub.files("my-org/tclr-r3d18-ucf101")) >= {"config.json", "model.safetensors", "README.md"}
    assert len(ran) >= 20 and {reason for _, reason in skipped} == set(SKIPPED.values()), (ran, skipped)
    assert os.environ["HF_ENDPOINT"] == hub.endpoint
