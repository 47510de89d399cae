"""What the command line says: typing mistakes are one line and exit 2
before any work; every command a message suggests runs as printed; lists and defaults are honest;
output piped to a file holds no progress bars, no ``None`` and no doubled words.

All of it through real subprocesses of ``python -m tclr_zoo.cli``, as users run it (warm-started: see
``tests/helpers/warm_python.py``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import warm_python
from hostile_videos import write_video

from tclr_zoo.hub.format import model_config, save_pretrained
from tclr_zoo.models.registry import create_model, list_models, resolve_model_args

CLI = warm_python.CLI
SMALL = {"channel_order": "bgr", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 32,
         "crop_fraction": 0.8, "frames": 16, "eval_frame_stride": 2, "pretrain_frame_stride": 4,
         "eval_protocol": {"clips": 2, "pooling": "temporal", "similarity": "cosine"}}


def run(*args, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return warm_python.run_cli(args, timeout=timeout, cwd=cwd)


def one_line(done: subprocess.CompletedProcess) -> str:
    """The single stderr line of a user error (exit 2, no traceback)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def suggested(message: str) -> list[list[str]]:
    """The `tclr-zoo ...` commands a message suggests, as argv lists for this interpreter."""
    return [CLI + shlex.split(command)[1:] for command in re.findall(r"`(tclr-zoo [^`]+)`", message)]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A random r3d_10_025 that works at 32x32 (fast to export and run)."""
    torch.manual_seed(0)
    model = create_model("r3d_10_025", head_dim=32)
    config = model_config(model, arch="r3d_10_025", model_args=resolve_model_args("r3d_10_025"), preprocessing=SMALL)
    return save_pretrained(model, tmp_path_factory.mktemp("cli") / "model", config)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [write_video(folder / f"clip{i}.mp4", 24 + 8 * i) for i in range(2)]


# ---- 4. typing mistakes: one line, exit 2, before anything is created ------------------------------

def test_wrong_types_in_set_are_refused_before_anything_is_made(small_model, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    line = one_line(run("pretrain", "--out", out, "--set", "train.epochs=one"))
    assert "epochs must be an integer, got 'one'" in line and not out.exists()
    line = one_line(run("eval", small_model, "--protocol", "linear", "--dataset", "ucf101", "--root", tiny_dataset,
                        "--set", "epochs=two", "--save", tmp_path / "saved"))
    assert "setting epochs must be an integer, got 'two'" in line and not (tmp_path / "saved").exists()
    line = one_line(run("pretrain", "--out", out, "--set", "model.arch=r3d_99"))
    assert all(arch in line for arch in list_models()) and "did you mean r3d_18" in line and not out.exists()


def test_output_names_and_devices_are_checked_while_parsing(tmp_path):
    # the model does not exist: a check made after loading it would complain about the model instead
    line = one_line(run("embed", tmp_path / "no-model", "x.mp4", "--out", tmp_path / "x.txt"))
    assert line.startswith("tclr-zoo embed: error:") and "'--out'" in line and ".safetensors or .npy" in line
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: --device cuda is valid here")
    line = one_line(run("embed", tmp_path / "no-model", "x.mp4", "--out", tmp_path / "x.npy", "--device", "cuda"))
    assert "'--device'" in line and "no CUDA device" in line and "--device cpu" in line


# ---- 5. hints that work when followed ---------------------------------------------------------------

def test_the_onnx_hint_and_the_triton_choice_run_as_printed(small_model, videos, tmp_path):
    line = one_line(run("embed", small_model, videos[0], "--out", tmp_path / "e.npy", "--backend", "onnx"))
    (export,) = suggested(line)
    target = export[export.index("--out") + 1]
    done = warm_python.run(export, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"and load {target}" in line
    embedded = run("embed", target, videos[0], "--out", tmp_path / "e.npy", "--backend", "onnx", cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr
    # --fp16 --triton: the repository serves the fp32 graph unless asked otherwise, and says which
    triton = run("export", small_model, "--out", tmp_path / "t", "--fp16", "--triton", "--max-batch", "2")
    assert triton.returncode == 0, triton.stderr
    assert "serving onnx/model.onnx (fp32, KIND_AUTO" in triton.stdout
    pbtxt = next((tmp_path / "t" / "triton").glob("*/config.pbtxt")).read_text()
    assert pbtxt.startswith("# generated by tclr-zoo export --triton") and "serving onnx/model.onnx" in pbtxt
    assert "kind: KIND_AUTO" in pbtxt
    from tclr_zoo.export.triton import write_model_repository

    fp16 = write_model_repository(tmp_path / "t", tmp_path / "repo16", fp16=True, kind="KIND_CPU")
    assert "serving onnx/model.fp16.onnx" in (fp16 / "config.pbtxt").read_text()
    line = one_line(run("export", small_model, "--out", tmp_path / "u", "--triton", "--triton-graph", "fp16"))
    assert "--triton-graph fp16 needs --triton and --fp16" in line


def test_model_name_hints_run_as_printed(tiny_run, videos, tmp_path):
    typo = tiny_run / "modle"  # a typing slip for .../tiny/model
    line = one_line(run("info", typo))
    assert f"did you mean {tiny_run / 'model'}?" in line and "list_models()" not in line
    assert run("info", tiny_run / "model").returncode == 0
    # a checkpoint is a model name like any other: described, embedded and exported as it is
    checkpoint = tmp_path / "last.pt"  # a copy: the export writes beside it
    shutil.copy(tiny_run / "checkpoints" / "last.pt", checkpoint)
    described = run("info", checkpoint)
    assert described.returncode == 0 and "architecture:   r3d_10_025" in described.stdout, described.stderr
    embedded = run("embed", checkpoint, videos[0], "--out", tmp_path / "e.npy")
    assert embedded.returncode == 0 and "embedded 1 video" in embedded.stdout, embedded.stderr
    done = run("export", checkpoint, "--out", tmp_path / "last-model")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "last-model" / "model.safetensors").is_file()


def invoke(*args) -> tuple[int, str]:
    """A command run in-process (click's runner): its exit status and stderr."""
    from click.testing import CliRunner

    from tclr_zoo import cli

    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    return result.exit_code, result.stderr


def test_model_hints_name_flags_and_run_as_printed(small_model, videos, tmp_path):
    """Hints of the SDK's errors say the command line's flag, never a Python keyword, and work when added."""
    embed = ["embed", "r3d_10_025", videos[0], "--out", tmp_path / "e.npy", "--workers", "0", "--no-progress"]
    code, line = invoke(*embed)
    assert code == 2 and line.endswith("; add --random-init for random weights\n") and "pretrained=" not in line
    assert invoke(*embed, "--random-init")[0] == 0
    code, line = invoke("embed", small_model, videos[0], "--out", tmp_path / "p.npy", "--precision", "fp16")
    assert code == 2 and "--backend onnx" in line and "backend='onnx'" not in line
    # an exported graph outputs one head: the hint for another says how, in flags
    export = tmp_path / "export"
    assert invoke("export", small_model, "--out", export, "--onnx", "--max-batch", "1")[0] == 0
    backbone = ["embed", export, videos[0], "--out", tmp_path / "b.npy", "--head", "backbone", "--workers", "0"]
    code, line = invoke(*backbone, "--backend", "onnx")
    assert code == 2 and "use --backend torch" in line and "backend='torch'" not in line, line
    assert invoke(*backbone, "--backend", "torch")[0] == 0


def test_a_bad_file_names_skip_bad_and_that_works(small_model, videos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    args = ["index", "build", small_model, videos[0], broken, videos[1], "--out", tmp_path / "index"]
    line = one_line(run(*args))
    assert str(broken) in line and "pass --skip-bad" in line
    done = run(*args, "--skip-bad")
    assert done.returncode == 0, done.stderr
    assert "indexed 2 videos (1 skipped)" in done.stdout and "of 2 videos" not in done.stdout
    assert f"skipped {broken}" in done.stderr


# ---- 6. honest lists and defaults ---------------------------------------------------------------------

def test_pretrained_list_says_what_is_not_published_and_how_to_fill_it():
    done = run("list", "--pretrained")
    rows = [line for line in done.stdout.splitlines() if line.startswith(("r3d_", "r2plus1d_"))]
    assert len(rows) == 3 and all(row.endswith("[not published yet]") for row in rows)
    assert "tclr-zoo convert" in done.stdout and "tclr-zoo push" in done.stdout and "TCLR_ZOO_HUB_ORG" in done.stdout


def test_recipe_choices_match_the_command():
    line = one_line(run("pretrain", "no_such_recipe"))
    assert "demo" in line and "tclr_r3d18_ucf101" in line and "finetune_" not in line and "linear_" not in line
    line = one_line(run("finetune", "no_such_recipe"))
    assert "finetune_r3d18_ucf101" in line and "linear_r3d18_ucf101" in line and "demo" not in line


def test_index_takes_folders_and_searches_with_the_model_it_records(small_model, videos):
    from tclr_zoo import VideoIndex, load_model

    index = VideoIndex.build(load_model(small_model), [videos[0].parent], progress=False)
    assert index.paths == [str(v) for v in videos]
    hits = index.search(str(videos[1]), k=2)[0]  # no model= : the one the index records is loaded
    assert hits[0].path == str(videos[1]) and hits[0].score == pytest.approx(1.0, abs=1e-5)


# ---- 7. output into a pipe -----------------------------------------------------------------------------

def test_piped_output_is_clean_and_says_how_numbers_were_measured(tiny_run, tiny_dataset, tmp_path):
    """An eval run with default workers and progress on, its stdout/stderr going to pipes (not a terminal)."""
    done = run("eval", tiny_run / "model", "--protocol", "retrieval", "--dataset", "ucf101", "--root", tiny_dataset,
               "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr + done.stdout and "it/s" not in done.stderr  # no progress bars in a pipe
    assert "worker processes" not in done.stderr  # workers capped at the CPUs: no DataLoader warning
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    assert "2 clips x 16 frames at stride 2" in lines[header - 1] and "retrieval head" in lines[header - 1]
    table = lines[header:header + 4]  # header, rule, R@1, R@5
    assert [line.split()[0] for line in table] == ["metric", "------", "R@1", "R@5"]
    assert len({len(line) - len(line.split()[-1]) for line in table}) == 1, table  # one value column
    info = run("info", tiny_run / "model")
    assert info.returncode == 0 and "None" not in info.stdout
    assert "results:" in info.stdout and "2 clips x 16 frames at stride 2" in info.stdout
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["knn_protocol"] == {"protocol": "retrieval", "dataset": "synthetic (tclr-zoo generated, ucf101 "
                                       "layout)", "split": 1, "clips": 2, "frames": 16, "stride": 2, "size": 32,
                                       "crop_fraction": 0.8, "head": "retrieval"}


def test_classify_from_the_command_line_matches_the_sdk(videos, tmp_path):
    """`tclr-zoo classify` prints and writes the SDK's top-k (labels in config order, softmax averaged)."""
    import tclr_zoo

    torch.manual_seed(1)
    labels = ["walk", "run", "jump"]
    model = create_model("r3d_10_025", head_dim=32, num_classes=len(labels))
    with torch.no_grad():  # logits = the bias whatever the video: probabilities softmax([0, 2, -1])
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 2.0, -1.0]))
    config = model_config(model, arch="r3d_10_025", model_args=resolve_model_args("r3d_10_025"),
                          preprocessing=SMALL, labels=labels)
    folder = save_pretrained(model.eval(), tmp_path / "classifier", config)
    done = run("classify", folder, *videos, "--top-k", "2", "--json", tmp_path / "top.json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    expected = tclr_zoo.load_model(folder, device="cpu").classify([str(v) for v in videos], top_k=2)
    written = json.loads((tmp_path / "top.json").read_text())
    assert [[(t["label"], t["probability"]) for t in r["top"]] for r in written["results"]] == expected
    assert [r["path"] for r in written["results"]] == [str(v) for v in videos] and written["failed"] == []
    for video, top in zip(videos, expected):
        assert f"{video}: {top[0][0]} {top[0][1]:.3f}, {top[1][0]} {top[1][1]:.3f}" in done.stdout
    known = torch.tensor([0.0, 2.0, -1.0]).softmax(0)
    for top in expected:
        assert [label for label, _ in top] == ["run", "walk"]
        assert [p for _, p in top] == pytest.approx([known[1].item(), known[0].item()], abs=1e-6)
