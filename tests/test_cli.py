"""The command line: every contract command is there, --help documents every option, errors are one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from pipeline.cli import app

# The interface contract (DESIGN.md): commands and the options other tools and scripts rely on.
CONTRACT = {
    "convert": ["--name"],
    "describe": ["--annotations", "--backend", "--model", "--base-url", "--concurrency", "--limit",
                 "--dry-run", "--name"],
    "build-dataset": ["--annotations", "--descriptions", "--images", "--name"],
    "train": ["--dataset", "--model-type", "--arch", "--name"],
    "eval": ["--run", "--arch", "--checkpoint", "--tasks", "--data-root"],
    "analyze": ["--descriptions", "--annotations", "--name"],
    "demo": [],
    "store": [],
}  # fmt: skip


def _commands() -> dict[str, TyperCommand | TyperGroup]:
    return typer.main.get_command(app).commands


def _all_commands() -> list[tuple[str, TyperCommand]]:
    out = []
    for name, cmd in _commands().items():
        if isinstance(cmd, TyperGroup):
            out += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
        else:
            out.append((name, cmd))
    return out


def test_every_command_is_seen_by_the_help_check():
    # typer vendors click from 0.26 on: a check written against click's classes would see nothing
    names = [n for n, _ in _all_commands()]
    assert {"describe", "store ls", "store rm"} <= set(names) and "store" not in names


def test_every_contract_command_and_option_is_registered():
    commands = _commands()
    assert set(CONTRACT) <= set(commands)
    for name, options in CONTRACT.items():
        flags = {opt for p in commands[name].params for opt in p.opts}
        assert set(options) <= flags, (name, set(options) - flags)
    assert {"ls", "show", "rm"} <= set(commands["store"].commands)


@pytest.mark.parametrize("name", [n for n, _ in _all_commands()])
def test_help_documents_every_option(cli, name):
    cmd = dict(_all_commands())[name]
    result = cli(*name.split(), "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    options = [p for p in cmd.params if isinstance(p, TyperOption)]
    assert len(options) + sum(isinstance(p, TyperArgument) for p in cmd.params) == len(cmd.params)
    for param in options:
        assert param.help and param.help.strip(), f"{name} {param.opts[0]} has no help"
        assert param.opts[0] in text, f"{name} --help does not show {param.opts[0]}"
    for param in cmd.params:
        if isinstance(param, TyperArgument) and getattr(param, "help", None) is not None:
            assert param.help.strip(), f"{name} argument {param.name} has empty help"


def test_root_help_and_global_store_option(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for word in ("--store", "--verbose", *CONTRACT):
        assert word in result.output
    store_opt = next(p for p in typer.main.get_command(app).params if "--store" in p.opts)
    assert store_opt.envvar == "FOCUS_STORE"


def test_errors_are_one_line(cli, tmp_path):
    result = cli("convert", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope.json'}: no such file"
    usage = cli("convert")  # missing argument: click's usage error, also non-zero
    assert usage.exit_code == 2 and "Traceback" not in usage.output


def test_verbose_shows_the_traceback(cli, tmp_path):
    result = cli("--verbose", "convert", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.output and "PipelineError" in result.output
    assert result.output.strip().endswith(f"error: {tmp_path / 'nope.json'}: no such file")


def test_unexpected_failure_is_one_line_unless_verbose(cli, tmp_path, monkeypatch):
    def boom(cfg, store):
        raise ValueError("something broke")

    monkeypatch.setattr("pipeline.convert.convert", boom)
    path = tmp_path / "a.json"
    path.write_text("[]")
    quiet = cli("convert", path)
    assert quiet.exit_code == 2
    assert quiet.output.strip() == "error: ValueError: something broke (run with --verbose for the traceback)"
    loud = cli("--verbose", "convert", path)
    assert loud.exit_code == 2 and "Traceback (most recent call last)" in loud.output


def test_the_cli_needs_no_click_and_no_private_typer_module(tmp_path):
    # typer vendors click as the private typer._click from 0.26 on and no longer installs click: the CLI may
    # use neither (pyproject's typer floor is the release whose public names it uses).
    root = Path(__file__).resolve().parents[1]
    private = re.compile(r"^\s*(import|from)\s+(typer\._|click\b)|\btyper\._\w+\.\w", re.M)
    for package in ("pipeline", "training", "evaluation"):
        for path in (root / package).rglob("*.py"):
            assert not private.search(path.read_text()), path
    blocked = "import sys; sys.modules['click'] = None; from pipeline.cli import main; main()"
    res = subprocess.run([sys.executable, "-c", blocked, "--store", str(tmp_path), "convert", "nope.json"],
                         env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 2 and res.stderr.strip() == "error: nope.json: no such file", res.stderr
