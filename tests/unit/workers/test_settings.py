"""Worker settings an operator sets through the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.settings import WorkerSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAD_DECODE_TIMEOUT_S", raising=False)


def test_decode_timeout_defaults_to_30_minutes() -> None:
    assert WorkerSettings().decode_timeout_s == 1800.0


@pytest.mark.parametrize("value", ["0", "0.0", "none", "None", " NONE "])
def test_decode_timeout_of_0_or_none_is_no_limit(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("VAD_DECODE_TIMEOUT_S", value)
    assert WorkerSettings().decode_timeout_s is None


def test_decode_timeout_per_job_0_is_no_limit_and_a_number_is_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_DECODE_TIMEOUT_S", "90")
    settings = WorkerSettings()
    assert settings.decode_timeout_s == 90.0
    assert settings.with_overrides(decode_timeout_s=0).decode_timeout_s is None
    assert settings.with_overrides(decode_timeout_s=None).decode_timeout_s is None


@pytest.mark.parametrize("value", ["-1", "forever", ""])
def test_decode_timeout_refuses_what_is_neither_seconds_nor_no_limit(monkeypatch: pytest.MonkeyPatch,
                                                                    value: str) -> None:
    monkeypatch.setenv("VAD_DECODE_TIMEOUT_S", value)
    with pytest.raises(ValidationError):
        WorkerSettings()
