"""The API tables of ``docs/service.md``, rendered from the code: every error ``code`` with its status and meaning,
and the statuses each route answers.

A table sits between ``<!-- api:NAME -->`` and ``<!-- /api -->``, ``NAME`` one of :data:`TABLES`; everything between
the markers is generated. ``python -m vad.cli.settings_docs`` checks (and with ``--write`` rewrites) these tables
together with the settings tables, and ``tests/unit/test_docs.py`` runs that check.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

BLOCK = re.compile(r"(<!-- api:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /api -->)", re.S)


def render_error_codes() -> str:
    """Every ``code`` of the error body (:func:`service.api.errors.error_codes`), by status."""
    from service.api.errors import error_codes
    from vad.cli.settings_docs import cell

    rows = ["| code | status | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{code}` | {status} | {cell(meaning)} |" for code, (status, meaning) in error_codes().items()]
    return "\n".join(rows) + "\n"


def render_route_statuses() -> str:
    """Each operation's statuses as the OpenAPI document of a deployment with API keys and streams on has them."""
    from service.api.openapi import deployment_document
    from service.app import create_app
    from service.settings import ServiceSettings

    with tempfile.TemporaryDirectory() as storage:  # nothing is written; the settings only need a place
        settings = ServiceSettings(api_keys=["docs"], stream_allowlist=["192.0.2.0/24"], storage_dir=Path(storage),
                                   redis_url="redis://127.0.0.1:1/0")  # never connected: the document needs no Redis
        document = deployment_document(create_app(settings), settings)
    rows = ["| route | success | errors |", "| --- | --- | --- |"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = sorted(operation["responses"])
            ok = ", ".join(s for s in statuses if s < "400")
            errors = ", ".join(s for s in statuses if s >= "400") or "none"
            rows.append(f"| `{method.upper()} {path}` | {ok} | {errors} |")
    return "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[], str]] = {"error-codes": render_error_codes, "route-statuses": render_route_statuses}


def regenerate(text: str) -> str:
    """``text`` (a docs file) with every API table rendered anew (each rendered once, however often it is used)."""
    rendered: dict[str, str] = {}

    def table(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in rendered:
            rendered[name] = TABLES[name]()
        return match.group(1) + rendered[name] + match.group(4)

    return BLOCK.sub(table, text)
