"""The Typer application shared by every command module, and small helpers for commands."""

from __future__ import annotations

import os
from enum import StrEnum

import typer

app = typer.Typer(
    name="vad",
    help="dsanet-vad: video anomaly detection with DSANet (AAAI 2026).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


def configured_redis_url() -> str | None:
    """The Redis the environment names (``VAD_REDIS_URL`` or ``REDIS_URL``), ``None`` when it names none."""
    from pydantic import ValidationError

    from vad.settings import QueueSettings

    try:
        settings = QueueSettings()
    except ValidationError as exc:
        raise fail(f"invalid VAD_* settings: {exc}") from exc
    return settings.redis_url if "redis_url" in settings.model_fields_set else None


def offline_hub() -> None:
    """open_clip/huggingface_hub otherwise try the network and hang on offline machines."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
