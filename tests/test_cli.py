"""The genkit CLI: help with examples, one-line errors with exit status 2, the commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from genkit.cli import COMMANDS as COMMANDS_TABLE
from genkit.cli import cli

COMMANDS = ["plugins", "train", "sample", "info", "eval"]


@pytest.fixture
def run(toy_registry):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(map(str, args)), catch_exceptions=False)

    return invoke


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(run, command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output and "genkit " in result.output


def test_help_and_plugins_do_not_import_torch():
    code = ("import sys\nfrom genkit.cli import main\n"
            "for argv in (['--help'], ['plugins']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "    if argv == ['--help']:  # no command module either\n"
            "        assert not [m for m in sys.modules if m in ('genkit.cli.train', "
            "'genkit.cli.sample', 'genkit.cli.hub', 'genkit.serve.command')]\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_help_lists_every_command(run):
    output = run("--help").output
    for name, (_, one_line) in COMMANDS_TABLE.items():
        assert f"  {name} " in output and one_line[:20] in output


@pytest.mark.parametrize("name", sorted(COMMANDS_TABLE))
def test_the_one_line_help_of_a_lazy_command_is_its_own(name):
    import importlib

    module, attribute = COMMANDS_TABLE[name][0].split(":")
    command = getattr(importlib.import_module(module), attribute)
    assert command.name == name
    assert COMMANDS_TABLE[name][1] == " ".join(command.help.split("\n\n")[0].split())


def _one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, fragment", [
    (["train", "--plugin", "nope", "--out", "{tmp}/r"], "unknown generator 'nope'; available:"),
    (["train", "--plugin", "toy", "--out", "{tmp}/r", "--steps", "0"], "--steps must be at least 1"),
    (["train", "--plugin", "toy", "--out", "{tmp}/r", "--set", "hidden=wide"], "must be an integer"),
    (["train", "--plugin", "toy", "--out", "{tmp}/r", "--set", "hiden=3"], "valid keys: image_size"),
    (["train", "--plugin", "toy", "--out", "{tmp}/r", "--data", "folder:{tmp}/none"], "does not exist"),
    (["train", "--plugin", "toy", "--out", "{tmp}/r", "--data", "moon"], "unknown data source 'moon'"),
    (["train", "--plugin", "toy", "--out", "{tmp}/r", "--device", "cuda:3"], "cuda"),
    (["train", "--out", "{tmp}/r", "--resume"], "holds no training checkpoint"),
    (["sample", "--checkpoint", "{tmp}/missing"], "does not exist"),
    (["sample", "--plugin", "toy"], "ships no default model"),
    (["info", "{tmp}"], "is not a genkit checkpoint"),
])
def test_user_errors_are_one_line_exit_2(run, tmp_path, args, fragment):
    result = run(*[a.format(tmp=tmp_path) for a in args])
    _one_line_error(result, fragment)


def test_train_sample_info_round_trip(run, tmp_path):
    result = run("train", "--plugin", "toy", "--out", tmp_path / "run", "--steps", "30",
                 "--set", "num_classes=10", "--log-with", "none", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "trained to step 30" in result.output

    result = run("sample", "--checkpoint", tmp_path / "run", "-n", "6", "--labels", "4,5",
                 "--out", tmp_path / "s", "--steps", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "wrote 6 samples" in result.output
    assert (tmp_path / "s" / "grid.png").is_file()
    manifest = [json.loads(x) for x in (tmp_path / "s" / "manifest.jsonl").read_text().splitlines()]
    assert [m["label"] for m in manifest] == [4, 5, 4, 5, 4, 5]

    result = run("sample", "--checkpoint", tmp_path / "run", "-n", "2", "--out", tmp_path / "t",
                 "--temperature", "0.5")
    _one_line_error(result, "unknown toy sampling option key 'temperature'; valid keys: steps")

    result = run("info", tmp_path / "run")
    assert result.exit_code == 0
    assert "generator   toy" in result.output and "steps=30" in result.output
    info = json.loads(run("info", tmp_path / "run", "--json").output)
    assert info["config"]["num_classes"] == 10 and len(info["identity"]) == 16


def test_resume_from_the_cli_continues_the_run(run, tmp_path):
    run("train", "--plugin", "toy", "--out", tmp_path / "run", "--steps", "10",
        "--log-with", "none", "--no-progress")
    result = run("train", "--out", tmp_path / "run", "--resume", "--steps", "20",
                 "--log-with", "none", "--no-progress")
    assert result.exit_code == 0, result.output
    steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert steps == ["step-00000010", "step-00000020"]


def test_plugins_lists_status(run):
    result = run("plugins", "--json")
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["toy"]["status"] == "ok"
    assert rows["toy"]["generators"][0]["name"] == "toy"
