"""Unit tests run without Redis: one that reaches the machine's Redis without being marked ``integration`` fails."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import REDIS_URL

_LIVE = urlsplit(REDIS_URL)
LIVE_REDIS = {(host, _LIVE.port) for host in (_LIVE.hostname, "localhost")}


@pytest.fixture(autouse=True)
def _no_live_redis_in_unit_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a unit test that opens a connection to the machine's Redis, with what to do instead.

    Tests that take the ``live_redis`` fixture (directly or through ``settings``/``client``/``ctx``) are marked
    ``integration`` by tests/conftest.py and may connect; a unit test that only needs a Redis that is down can
    point at a port nobody listens on (see test_redis_down_is_a_fast_503).
    """
    if request.node.get_closest_marker("integration") is not None:
        return
    try:
        from redis.connection import AbstractConnection
    except ImportError:  # an install without redis cannot reach it either
        return
    name = "connect_check_health" if hasattr(AbstractConnection, "connect_check_health") else "connect"
    original = getattr(AbstractConnection, name)

    def guarded(self: AbstractConnection, *args: object, **kwargs: object) -> object:
        address = (getattr(self, "host", None), getattr(self, "port", None))
        if address in LIVE_REDIS:
            pytest.fail(f"{request.node.nodeid} connects to the machine's Redis ({REDIS_URL}) but is a unit test: "
                        "take the live_redis fixture (tests/conftest.py), which marks it integration, or move it "
                        "to tests/integration/", pytrace=False)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, name, guarded)
