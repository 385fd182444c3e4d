"""The shared settings: one object reads the environment, including the common REDIS_URL."""

from __future__ import annotations

from importlib import metadata

import pytest

import vad
from vad.cli.app import configured_redis_url
from vad.settings import QueueSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VAD_REDIS_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def test_redis_url_reads_vad_redis_url_then_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert QueueSettings().redis_url == "redis://127.0.0.1:6379/0" and configured_redis_url() is None
    monkeypatch.setenv("REDIS_URL", "redis://common:6379/0")
    assert QueueSettings().redis_url == "redis://common:6379/0" == configured_redis_url()
    monkeypatch.setenv("VAD_REDIS_URL", "redis://ours:6379/1")
    assert QueueSettings().redis_url == "redis://ours:6379/1" == configured_redis_url()
    assert QueueSettings(redis_url="redis://given:1/0").redis_url == "redis://given:1/0"


def test_the_version_is_the_installed_metadata() -> None:
    assert vad.__version__ == metadata.version("dsanet-vad")
