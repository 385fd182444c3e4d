"""The OpenAPI schema's parts built from settings (the whole document, served by the API on a real Redis, is
checked in tests/integration/service/test_openapi.py)."""

from __future__ import annotations

import re

from service.api.openapi import callback_url_schema


def test_callback_url_schema_follows_the_allow_list() -> None:
    assert callback_url_schema([])["maxLength"] == 0  # callbacks off: only empty is accepted
    pattern = re.compile(callback_url_schema(["hooks.example.com", "*.corp.example"])["pattern"])
    for url in ("https://hooks.example.com/x", "http://hooks.example.com:8080", "https://a.b.corp.example/cb?x=1"):
        assert pattern.search(url), url
    for url in ("ftp://hooks.example.com/x", "https://evil.example.org/x", "https://hooks.example.com.evil.org/"):
        assert not pattern.search(url), url
    assert pattern.search("")  # empty is no callback, as the API reads it (schemathesis ST201 otherwise)
