"""API settings: one pydantic-settings object, read from ``VAD_*`` environment variables at start-up."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from vad.settings import QueueSettings, split_commas


class ServiceSettings(QueueSettings):
    """Settings of the API gateway (``VAD_`` prefix, e.g. ``VAD_REDIS_URL``); the shared ones are in
    :class:`vad.settings.QueueSettings`."""

    model_config = SettingsConfigDict(env_prefix="VAD_", extra="ignore")

    redis_timeout_s: float = Field(2.0, gt=0, description="Socket timeout towards Redis; a dead Redis gives 503.")
    upload_idle_timeout_s: float = Field(
        60.0, gt=0, description="An upload that sends no data for this long is cut off (408, connection closed) "
                                "and its partial file removed; a slow upload that keeps sending is never cut off.")
    job_timeout_s: int = Field(3600, gt=0, description="Hard limit for one analysis.")
    max_retries: int = Field(2, ge=0, description="Retries of a job whose worker died or hit a transient error.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted X-API-Key values (comma-separated); empty: no authentication.")

    _split_keys = field_validator("api_keys", mode="before")(split_commas)
