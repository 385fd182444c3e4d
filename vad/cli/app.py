"""The Typer application shared by every command module, and small helpers for commands."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError

app = typer.Typer(
    name="vad",
    help="dsanet-vad: video anomaly detection with DSANet (AAAI 2026).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help: rich's option table cuts names and help at 80 columns and gives every flag a <bool> placeholder
    rich_markup_mode=None,
)


class Preset(StrEnum):
    ucf = "ucf"
    xd = "xd"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` in red on stderr; raise the returned Exit (code 2)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def invalid_settings(exc: ValidationError) -> typer.Exit:
    """:func:`fail` with every problem of a settings ``ValidationError`` on one line (field: message; ...)."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return fail(f"invalid settings (options or VAD_* environment variables): {problems}")


def setting_default(name: str) -> str:
    """``default VAD_NAME, value`` (and the setting's range, if it has one) for an option's help.

    The value and the range are the worker setting's own, so that the help never repeats (and never contradicts)
    a number of :class:`~workers.settings.WorkerSettings`.
    """
    import annotated_types

    from workers.settings import WorkerSettings

    field = WorkerSettings.model_fields[name]
    default = field.get_default()
    text = f"default VAD_{name.upper()}, {'unset' if default is None else default}"
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    return text + (f"; {low} to {high}" if low is not None and high is not None else "")


def configured_redis_url() -> str | None:
    """The Redis the environment names (``VAD_REDIS_URL`` or ``REDIS_URL``), ``None`` when it names none."""
    from pydantic import ValidationError

    from vad.settings import QueueSettings

    try:
        settings = QueueSettings()
    except ValidationError as exc:
        raise invalid_settings(exc) from exc
    return settings.redis_url if "redis_url" in settings.model_fields_set else None


def offline_hub() -> None:
    """open_clip/huggingface_hub otherwise try the network and hang on offline machines."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
