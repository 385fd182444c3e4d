"""Every command that takes ``--preset`` refuses an unknown or malformed one with one error line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import vad.cli  # noqa: F401 - registers every command on the shared app
from vad.cli.app import app

COMMANDS = {  # each command with the other options it needs to reach the preset
    "eval": ["--predictions", "{tmp}"],
    "make-gt": ["--predictions", "{tmp}", "-o", "{tmp}/gt.npy"],
    "synth-features": ["-o", "{tmp}/out"],
    "train": ["--features-root", "{tmp}", "--random-clip"],
}

BAD_PRESETS = {
    "unknown name": ("foo", None, "unknown preset 'foo': use one of ucf, xd, demo or the path of a preset JSON"),
    "not JSON": ("bad.json", "{bad", "is not valid JSON"),
    "not an object": ("list.json", "[1, 2]", "must hold a JSON object"),
    "unknown field": ("field.json", '{"name": "x", "colour": 1}', "unknown DSANet config field(s): colour"),
    "wrong types": ("types.json", '{"name": "x", "classes": 5}', "malformed DSANet config"),
    "a folder": (".", None, "unknown preset"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(BAD_PRESETS))
def test_a_bad_preset_is_one_error_line_and_exit_2(tmp_path: Path, command: str, case: str) -> None:
    name, content, expected = BAD_PRESETS[case]
    preset = name
    if content is not None:
        (tmp_path / name).write_text(content)
        preset = str(tmp_path / name)
    elif name == ".":
        preset = str(tmp_path)
    args = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    result = CliRunner().invoke(app, [command, "--preset", preset, *args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
