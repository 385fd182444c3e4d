"""Every ``code`` the API can answer is listed, with its status and a meaning, by ``error_codes()``; docs/service.md's
table of codes is rendered from that list."""

from __future__ import annotations

import re
from pathlib import Path

from service.api.errors import HANDLER_CODES, error_code, error_codes
from service.exceptions import ServiceError

SERVICE = Path(__file__).resolve().parents[3] / "service"


def test_every_code_in_the_code_is_listed_with_its_status() -> None:
    codes = error_codes()
    literals = set()
    for path in SERVICE.rglob("*.py"):
        text = path.read_text()
        literals |= set(re.findall(r"""\bcode=["'](\w+)["']""", text))
        literals |= set(re.findall(r"""handler_response\(\s*["'](\w+)["']""", text))
    assert literals and literals <= set(codes), literals - set(codes)
    for name in ("streams_disabled", "invalid_stream", "stream_not_found", "upload_storage_unavailable",
                 "store_unavailable", "invalid_request", "not_ready", "method_not_allowed"):
        assert name in codes, name
    assert codes["streams_disabled"][0] == 405 and codes["upload_storage_unavailable"][0] == 503
    assert all(meaning.strip() and 400 <= status < 600 for status, meaning in codes.values())
    assert list(codes) == sorted(codes, key=lambda c: (codes[c][0], c))


def test_each_error_class_is_a_code_with_its_docstring_and_status() -> None:
    def leaves(cls: type[ServiceError]) -> list[type[ServiceError]]:
        subs = cls.__subclasses__()
        return [leaf for sub in subs for leaf in leaves(sub)] if subs else [cls]

    codes = error_codes()
    for cls in leaves(ServiceError):
        status, meaning = codes[error_code(cls)]
        assert status == cls.status_code and meaning.split()[:3] == (cls.__doc__ or "").split()[:3], cls
    assert "upload_refused" not in codes and "service_error" not in codes  # bases are no code
    assert set(HANDLER_CODES) <= set(codes)
