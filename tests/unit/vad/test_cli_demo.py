"""`vad demo` when the demo model does not train: the build's reason as an error (exit code 2), nothing cached, no
stack started."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import vad.cli  # noqa: F401 - registers every command on the shared app
from vad.cli.app import app
from vad.cli.stack import free_port


def test_a_demo_model_that_does_not_train_stops_vad_demo_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vad.cli.commands.demo as command
    import workers.demo.cache as cache
    from workers.demo.recipe import DemoRecipe
    from workers.exceptions import DemoBuildFailed

    def build(recipe: DemoRecipe, work: Path, **_: object) -> None:
        raise DemoBuildFailed("the demo model did not train: 3 run(s) stayed below validation frame AUC 0.95")

    def stack(*_: object) -> None:
        raise AssertionError("the stack must not start without a model")

    for name in ("VAD_BUNDLE", "VAD_DEMO_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cache, "build_demo_bundle", build)
    monkeypatch.setattr(command, "_stack", stack)
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--port", str(free_port()), "--cache-dir",
                                      str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "error: the demo model did not train: 3 run(s) stayed below validation frame AUC 0.95" in result.output
    assert cache.cached_bundle(DemoRecipe(), tmp_path) is None and not (tmp_path / "out").exists()
