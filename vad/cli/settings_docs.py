"""The environment-variable tables of ``docs/*.md``, rendered from the settings classes' field descriptions (and,
through :mod:`vad.cli.api_docs`, the API's tables of error codes and statuses per route).

A table sits between ``<!-- settings:NAME -->`` and ``<!-- /settings -->`` in a docs file, ``NAME`` one of
:func:`table_fields`' keys (an API table between ``<!-- api:NAME -->`` and ``<!-- /api -->``); everything between
the markers is generated. From the repository root::

    .venv/bin/python -m vad.cli.settings_docs           # check: exit 1, naming the stale tables
    .venv/bin/python -m vad.cli.settings_docs --write   # rewrite the tables in place

``tests/unit/test_docs.py`` runs the check, so the docs cannot drift from the code.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pydantic.aliases import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from vad.cli import api_docs

ROOT = Path(__file__).resolve().parents[2]
DOCS_DIR = ROOT / "docs"
WRITE_COMMAND = ".venv/bin/python -m vad.cli.settings_docs --write"

BLOCK = re.compile(r"(<!-- settings:(?P<name>[\w.]+) -->\n)(?P<body>.*?)(<!-- /settings -->)", re.S)

# The worker settings the queue side reads (docs/service.md); the rest configure the pipeline (docs/analysis.md),
# so a new pipeline field lands in the pipeline table without touching this module.
WORKER_QUEUE_FIELDS = ("models", "gpus", "workers_per_gpu", "heartbeat_interval_s", "heartbeat_ttl_s",
                       "hard_timeout_grace_s", "max_jobs_per_process")
STREAM_PREFIX = "stream_"
"""Live-stream settings (docs/streams.md) are named ``stream_*``."""
EVIDENCE_PREFIX = "evidence"
"""Evidence settings (docs/review.md) are named ``evidence*``."""
MQTT_PREFIX = "mqtt_"
"""MQTT settings (docs/review.md) are named ``mqtt_*``."""


def table_fields() -> dict[str, tuple[type[BaseSettings], list[str]]]:
    """Table name → (the settings class that reads the variables, the fields listed), in field order."""
    from service.settings import ServiceSettings
    from vad.settings import QueueSettings
    from workers.settings import WorkerSettings

    def own(cls: type[BaseSettings]) -> list[str]:
        return [name for name in cls.model_fields if name not in QueueSettings.model_fields]

    worker = own(WorkerSettings)
    stream = [name for name in worker if name.startswith(STREAM_PREFIX)]
    mqtt = [name for name in worker if name.startswith(MQTT_PREFIX)]
    evidence = [name for name in worker if name.startswith(EVIDENCE_PREFIX)]
    worker = [name for name in worker if name not in stream and name not in mqtt and name not in evidence]
    return {
        # the shared fields, read through a deployable class so that its env prefix applies
        "QueueSettings": (ServiceSettings, list(QueueSettings.model_fields)),
        "ServiceSettings": (ServiceSettings, own(ServiceSettings)),
        "WorkerSettings.queue": (WorkerSettings, [name for name in worker if name in WORKER_QUEUE_FIELDS]),
        "WorkerSettings.pipeline": (WorkerSettings, [name for name in worker if name not in WORKER_QUEUE_FIELDS]),
        "WorkerSettings.stream": (WorkerSettings, stream),
        "WorkerSettings.mqtt": (WorkerSettings, mqtt),
        "WorkerSettings.evidence": (WorkerSettings, evidence),
    }


def variables(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set ``field``: its aliases when it has some, else prefix + name."""
    alias = field.validation_alias or field.alias
    if isinstance(alias, AliasChoices):
        names = [choice for choice in alias.choices if isinstance(choice, str)]
    elif isinstance(alias, str):
        names = [alias]
    else:
        names = [str(cls.model_config.get("env_prefix", "")) + name]
    return list(dict.fromkeys(n.upper() for n in names))  # matched case-insensitively; keep the first spelling


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if value in ("", [], ()):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def cell(text: str) -> str:
    """One table cell: one line, ``|`` escaped, reST literals as Markdown code."""
    text = " ".join(text.split()).replace("|", "\\|")
    return re.sub(r"``(.+?)``", r"`\1`", text)


def render_table(name: str) -> str:
    """The Markdown table ``name`` (a key of :func:`table_fields`), ending in a newline.

    Raises:
        KeyError: no such table.
        ValueError: a field has no description.
    """
    from workers.settings import JOB_FIELDS

    cls, names = table_fields()[name]
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for field_name in names:
        field = cls.model_fields[field_name]
        if not field.description:
            raise ValueError(f"{cls.__name__}.{field_name} has no Field(description=...); the docs table needs one")
        meaning = field.description + (" Per job." if cls.__name__ == "WorkerSettings" and field_name in JOB_FIELDS
                                       else "")
        names_cell = " / ".join(f"`{v}`" for v in variables(cls, field_name, field))
        rows.append(f"| {names_cell} | {default_text(field)} | {cell(meaning)} |")
    return "\n".join(rows) + "\n"


def regenerate(text: str) -> str:
    """``text`` (a docs file) with every settings table and API table rendered anew."""
    text = BLOCK.sub(lambda m: m.group(1) + render_table(m.group("name")) + m.group(4), text)
    return api_docs.regenerate(text) if api_docs.BLOCK.search(text) else text


def placed_tables(docs_dir: Path = DOCS_DIR, block: re.Pattern[str] = BLOCK) -> dict[str, list[Path]]:
    """Table name → the docs files that hold it (settings tables, or those of another ``block`` pattern)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(docs_dir.glob("*.md")):
        for match in block.finditer(path.read_text()):
            found.setdefault(match.group("name"), []).append(path)
    return found


def _placement_problems(placed: dict[str, list[Path]], known: list[str], opening: str, closing: str) -> list[str]:
    found = [f"table {name} is in no docs file: add {opening.format(name=name)}{closing} to one"
             for name in sorted(set(known) - set(placed))]
    for name, paths in sorted(placed.items()):
        if name not in known:
            found.append(f"{', '.join(map(str, paths))}: unknown table {name} (known: {', '.join(known)})")
        elif len(paths) > 1:
            found.append(f"table {name} appears more than once: {', '.join(map(str, paths))}")
    return found


def problems(docs_dir: Path = DOCS_DIR, write: bool = False) -> list[str]:
    """What is wrong with the tables in ``docs_dir`` (after rewriting stale ones when ``write``)."""
    found = _placement_problems(placed_tables(docs_dir), list(table_fields()), "<!-- settings:{name} -->",
                                "<!-- /settings -->")
    found += _placement_problems(placed_tables(docs_dir, api_docs.BLOCK), list(api_docs.TABLES),
                                 "<!-- api:{name} -->", "<!-- /api -->")
    if found:
        return found
    for path in sorted(docs_dir.glob("*.md")):
        text = path.read_text()
        fresh = regenerate(text)
        if fresh != text:
            if write:
                path.write_text(fresh)
                print(f"updated {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            else:
                found.append(f"{path}: generated tables differ from the code; run {WRITE_COMMAND}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vad.cli.settings_docs", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the tables in docs/*.md in place")
    args = parser.parse_args(argv)
    found = problems(DOCS_DIR, write=args.write)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
