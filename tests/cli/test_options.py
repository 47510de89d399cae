"""One dialect across commands: every command's ``--help`` shows an example of itself and describes
only its own options; ``-k/--top-k`` is the one spelling of "how many"; ``--json`` is a file, or
stdout with ``-`` (a bare ``--json`` too, as the last option); ``--save-every`` is gone but harmless."""

from __future__ import annotations

import json

import click
import pytest
import torch
from click.testing import CliRunner

from tclr_zoo import cli
from tclr_zoo.retrieval.index import VideoIndex


def _commands(group: click.Group = cli.main, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in _commands()])
def test_every_help_has_an_example_of_its_own_command(path):
    text = CliRunner().invoke(cli.main, [*path.split(), "--help"]).output
    example = text.split("Example:", 1)
    assert len(example) == 2, text
    lines = [line.strip() for line in example[1].splitlines() if line.strip().startswith("tclr-zoo")]
    assert any(line.startswith(f"tclr-zoo {path} ") for line in lines), lines


@pytest.mark.parametrize("path", ["embed", "classify", "index search", "index build", "info"])
def test_overwrite_help_names_only_the_commands_own_outputs(path):
    text = CliRunner().invoke(cli.main, [*path.split(), "--help"]).output
    overwrite = text.split("--overwrite", 1)[1].split("\n  -", 1)[0]
    assert "--save" not in overwrite and ("--out" in overwrite or "--json" in overwrite or "index" in overwrite)


@pytest.mark.parametrize("path", ["classify", "index search", "app"])
def test_top_k_is_spelled_k_or_top_k_everywhere(path):
    command = cli.main
    for name in path.split():
        command = command.commands[name]
    (option,) = [p for p in command.params if p.name == "top_k"]
    assert option.opts == ["-k", "--top-k"]


@pytest.fixture
def small_index(tmp_path):
    index = VideoIndex(3)
    index.add(torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0.5, 0.5, 0]]), ["a", "b", "c"])
    return index.save(tmp_path / "idx")


def test_index_search_json_goes_to_a_file_or_to_stdout(small_index, tmp_path):
    runner = CliRunner()
    text = runner.invoke(cli.main, ["index", "search", str(small_index), "a", "--top-k", "2"])
    assert text.exit_code == 0 and [line.split()[2] for line in text.stdout.splitlines()] == ["a", "b"]
    for spelling in (["--json"], ["--json", "-"]):  # stdout: the JSON alone
        printed = runner.invoke(cli.main, ["index", "search", str(small_index), "a", "-k", "2", *spelling])
        assert [hit["id"] for hit in json.loads(printed.stdout)] == ["a", "b"], printed.output
    target = tmp_path / "hits.json"
    written = runner.invoke(cli.main, ["index", "search", str(small_index), "a", "-k", "2", "--json", str(target)])
    assert written.exit_code == 0 and written.stdout == text.stdout  # the text still printed
    assert [hit["id"] for hit in json.loads(target.read_text())] == ["a", "b"]
    again = runner.invoke(cli.main, ["index", "search", str(small_index), "a", "--json", str(target)])
    assert again.exit_code == 2 and "--overwrite" in again.output  # a file is never replaced silently
    wrong = runner.invoke(cli.main, ["index", "search", str(small_index), "a", "--json", str(tmp_path / "hits.txt")])
    assert wrong.exit_code == 2 and "must end in .json (or be -, to print it)" in wrong.output


def test_info_json_goes_to_a_file_or_to_stdout(saved, tmp_path):
    runner = CliRunner()
    printed = [json.loads(runner.invoke(cli.main, ["info", str(saved), *spelling]).stdout)
               for spelling in (["--json"], ["--json", "-"])]
    config = json.loads((saved / "config.json").read_text())
    assert printed[0] == printed[1] and printed[0]["architecture"] == config["architecture"] == "r3d_10_025"
    target = tmp_path / "config.json"
    written = runner.invoke(cli.main, ["info", str(saved), "--json", str(target)])
    assert written.exit_code == 0 and "r3d_10_025" in written.stdout and not written.stdout.startswith("{")
    assert json.loads(target.read_text()) == printed[0]


def test_save_every_is_accepted_with_a_note(saved, video, tmp_path):
    result = CliRunner().invoke(cli.main, ["index", "build", str(saved), str(video), "--out", str(tmp_path / "idx"),
                                           "--save-every", "30", "--no-progress", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "--save-every is no longer used" in result.stderr and result.stdout.startswith("indexed 1 video")
