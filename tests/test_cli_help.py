"""--help of the commands with many options (describe, train, eval) groups them into panels."""

from __future__ import annotations

import re

import pytest
import typer
from typer.core import TyperOption

from pipeline.cli import app
from pipeline.cli.app import PanelCommand

PANELLED = ("describe", "train", "eval")


def _command(name: str) -> PanelCommand:
    return typer.main.get_command(app).commands[name]


def _sections(help_text: str) -> dict[str, str]:
    """Section title -> its body: a title is an unindented line ending in ':' (click's section heading)."""
    parts = re.split(r"^(\S[^\n]*):\n", help_text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("name", PANELLED)
def test_every_option_is_in_a_panel(name):
    cmd = _command(name)
    assert isinstance(cmd, PanelCommand)
    options = [p for p in cmd.params if isinstance(p, TyperOption)]
    assert len(options) > 10
    outside = [p.opts[0] for p in options if not p.rich_help_panel]
    assert not outside, f"{name}: options in no panel: {outside}"


@pytest.mark.parametrize("name", PANELLED)
def test_help_lists_each_option_under_its_panel(cli, name):
    result = cli(name, "--help", terminal_width=80)
    assert result.exit_code == 0, result.output
    sections = _sections(result.output)
    options = [p for p in _command(name).params if isinstance(p, TyperOption)]
    panels = list(dict.fromkeys(p.rich_help_panel for p in options))
    # the panels in the order of the command's parameters, then click's own --help
    assert [t for t in sections if t not in ("Usage", "Arguments")] == [*panels, "Options"]
    for p in options:
        words = sections[p.rich_help_panel].split()
        assert p.opts[0] in words, f"{name} {p.opts[0]} is not under {p.rich_help_panel}"
    assert sections["Options"].split()[0] == "--help"


def test_panels_do_not_change_the_other_commands(cli):
    """A command without panels keeps click's plain 'Options' list."""
    result = cli("convert", "--help")
    assert result.exit_code == 0
    assert [t for t in _sections(result.output) if t != "Usage"] == ["Arguments", "Options"]
