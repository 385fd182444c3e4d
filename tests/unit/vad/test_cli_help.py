"""Every command's --help reads well at 80 columns: nothing cut, flags shown as flags, defaults from the settings."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

import vad.cli  # noqa: F401 - registers every command on the shared app
from vad.cli.app import app
from workers.settings import WorkerSettings

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)  # type: ignore[attr-defined]


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_tested() -> None:
    assert {"analyze", "eval", "train", "watch", "serve", "extract", "make-gt", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_and_nothing_is_cut(command: str) -> None:
    text = help_text(*([command] if command else []))
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert too_long == []
    assert "…" not in text  # what rich's option table put where it cut a name or a help text
    if command:
        for param in GROUP.commands[command].params:
            for name in [*param.opts, *param.secondary_opts] if param.param_type_name == "option" else []:
                assert re.search(rf"(^|[\s,/]){re.escape(name)}([\s,]|$)", text, re.M), f"{name} is cut"


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_are_shown_as_flags(command: str) -> None:
    text = help_text(command)
    assert "<bool>" not in text
    for param in GROUP.commands[command].params:
        if param.param_type_name == "option" and param.is_flag:
            # a flag's names are followed by its help, never by a value placeholder
            assert not re.search(rf"{re.escape(param.opts[-1])} <", text), f"{param.opts[-1]} shows a value"


@pytest.mark.parametrize("command", COMMANDS)
def test_defaults_named_by_a_setting_are_the_settings_own(command: str) -> None:
    text = " ".join(help_text(command).split())  # help lines joined: a default may wrap
    for name in re.findall(r"default VAD_([A-Z0-9_]+), ", text):
        field = WorkerSettings.model_fields[name.lower()]
        default = field.get_default()
        assert f"VAD_{name}, {'unset' if default is None else default}" in text


def test_watch_help_gives_the_window_setting_default() -> None:
    text = " ".join(help_text("watch").split())
    assert f"VAD_STREAM_WINDOW, {WorkerSettings.model_fields['stream_window'].default};" in text
    assert "256)" in text and "(default VAD_STREAM_WINDOW, 256" not in text
