"""The hostile URL table (tests/support/hostile_urls.py) through the policy as each caller applies it, with the real
resolver: every row refused for callbacks, sources and streams under strict settings, the metadata rows under the
most permissive ones too, and no refusal quotes a credential."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.hostile_urls import HOSTILE, METADATA, PERMISSIVE, SECRET_WORDS, STRICT, ids
from vad.net.rules import check_callback_url, check_source, check_stream_url, resolve_callback, resolve_source
from vad.settings import QueueSettings


def callers(settings: dict[str, Any]) -> dict[str, Callable[[str], object]]:
    queue = QueueSettings(**settings)
    return {
        "callback at submission": lambda url: check_callback_url(url, queue.callback_allowlist,
                                                                 queue.callback_allow_private),
        "callback when sent": lambda url: resolve_callback(url, queue.callback_allowlist,
                                                           queue.callback_allow_private),
        "source at submission": lambda url: check_source(url, queue),
        "source when fetched": lambda url: resolve_source(url, queue),
        "stream": lambda url: check_stream_url(url, queue.stream_allowlist),
    }


def refusal(call: Callable[[str], object], url: str) -> str:
    with pytest.raises(ValueError) as refused:  # CallbackRefused, SourceRefused, StreamRefused
        call(url)
    message = str(refused.value)
    assert not any(word in message for word in SECRET_WORDS), message
    return message


@pytest.mark.parametrize(("url", "what"), HOSTILE, ids=ids(HOSTILE))
def test_every_caller_refuses_every_hostile_url(url: str, what: str) -> None:
    for caller, call in callers(STRICT).items():
        assert refusal(call, url), caller


@pytest.mark.parametrize(("url", "what"), METADATA, ids=ids(METADATA))
def test_metadata_addresses_are_refused_whatever_the_settings(url: str, what: str) -> None:
    for caller, call in callers(PERMISSIVE).items():
        assert "metadata" in refusal(call, url), caller


def test_the_strict_settings_still_let_the_callers_reach_what_they_should() -> None:
    """The table proves something only if the same settings accept good URLs."""
    resolve = {"cam1.cams.example.com": ["203.0.113.7"], "203.0.113.9": ["203.0.113.9"]}.__getitem__
    queue = QueueSettings(**STRICT)
    assert check_callback_url("https://hooks.example.com/h", queue.callback_allowlist, resolve=False)
    assert check_source("https://videos.example.com/a.mp4", queue, resolve=False)
    assert check_stream_url("https://cam1.cams.example.com/live.m3u8", queue.stream_allowlist,
                            resolve=lambda host, port: resolve(host)).named
    assert check_stream_url("rtsp://203.0.113.9/s", queue.stream_allowlist, resolve=lambda host, port: resolve(host))
    anywhere = QueueSettings(**PERMISSIVE)
    assert check_stream_url("rtsp://169.254.10.20/s", anywhere.stream_allowlist)  # a link-local camera is no metadata
    assert check_callback_url("https://10.0.0.5/h", anywhere.callback_allowlist, anywhere.callback_allow_private)
