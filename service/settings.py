"""API settings: one pydantic-settings object, read from ``VAD_*`` environment variables at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings of the API gateway (``VAD_`` prefix, e.g. ``VAD_REDIS_URL``)."""

    model_config = SettingsConfigDict(env_prefix="VAD_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding the queue, job records and results.")
    redis_timeout_s: float = Field(2.0, gt=0, description="Socket timeout towards Redis; a dead Redis gives 503.")
    key_prefix: str = Field("vad:", description="Prefix of our own Redis keys (RQ's keys are RQ's).")
    queue_name: str = Field("vad", description="RQ queue the workers listen on.")
    storage_dir: Path = Field(Path("data/uploads"), description="Where uploads are stored (shared with workers).")
    max_upload_mb: float = Field(2048, gt=0, description="Largest accepted upload, in MiB (413 above).")
    result_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="How long results and job records are kept.")
    upload_retention_s: int = Field(0, ge=0, description="Keep uploads this long after the job ends (0: delete "
                                                         "at once).")
    job_timeout_s: int = Field(3600, gt=0, description="Hard limit for one analysis.")
    max_retries: int = Field(2, ge=0, description="Retries of a job whose worker died or hit a transient error.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted X-API-Key values (comma-separated); empty: no authentication.")
    callback_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts callback URLs may point to (comma-separated; '*.example.com' "
                                          "allowed). Empty: callbacks are refused.")
    callback_allow_private: bool = Field(False, description="Allow callbacks to private/loopback addresses.")

    @field_validator("api_keys", "callback_allowlist", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache(maxsize=1)
def get_settings() -> ServiceSettings:
    return ServiceSettings()
