"""Settings the API and the workers share (Redis, queue, storage, retention, callbacks): defined once.

:class:`service.settings.ServiceSettings` and :class:`workers.settings.WorkerSettings` extend this
class, so a deployment sets ``VAD_REDIS_URL`` (and the rest) once for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_CHARS = 16
"""Shortest callback secret accepted: a guessable key would make the signatures worthless."""


def split_commas(value: object) -> object:
    """``"a, b"`` → ``["a", "b"]`` for list settings given as one environment variable."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class QueueSettings(BaseSettings):
    """Shared by the API and the workers (``VAD_`` prefix)."""

    model_config = SettingsConfigDict(env_prefix="VAD_", extra="ignore", populate_by_name=True)

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("VAD_REDIS_URL", "REDIS_URL", "redis_url"),
        description="Redis holding the queue, job records and results (VAD_REDIS_URL, or the common REDIS_URL).")
    key_prefix: str = Field("vad:", description="Prefix of our own Redis keys (RQ's keys are RQ's).")
    queue_name: str = Field("vad", description="RQ queue the workers listen on.")
    storage_dir: Path = Field(Path("data/uploads"), description="Where uploads are stored (shared by API and workers).")
    result_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="How long results and job records are kept.")
    upload_retention_s: int = Field(0, ge=0, description="Keep an upload this long after its job ends (0: delete "
                                                         "at once).")
    callback_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts callback URLs may point to (comma-separated, '*.example.com' "
                                          "allowed). Empty: callbacks are refused.")
    callback_allow_private: bool = Field(False, description="Allow callbacks to private/loopback addresses.")
    callback_secret: SecretStr | None = Field(
        None, description="Key of the HMAC-SHA256 signature of every callback (header X-VAD-Signature), at least "
                          f"{MIN_SECRET_CHARS} characters. Unset: callbacks are sent unsigned and the worker logs a "
                          "warning.")
    callback_retries: int = Field(3, ge=0, le=10, description="Retries of a callback after a 5xx answer, a timeout or "
                                                              "a connection error (never after a 4xx).")
    callback_timeout_s: float = Field(10.0, gt=0, description="Timeout of one callback attempt (connect, answer).")
    callback_backoff_s: float = Field(1.0, ge=0, description="Wait before the first retry of a callback; doubled at "
                                                             "each further retry.")

    stream_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts and networks live streams may reach (comma-separated: CIDRs such as "
                                          "10.20.0.0/16, addresses, host names, '*.cams.example.com'); a URL whose "
                                          "host resolves to any address outside it is refused (422). Empty: live "
                                          "streams are off.")
    streams_per_worker: int = Field(2, ge=0, le=256, description="Live streams one worker process runs at once, "
                                                                 "beside its jobs; more streams wait as queued. 0: "
                                                                 "this worker runs none.")
    stream_lease_ttl_s: float = Field(10.0, ge=1, le=600, description="Lease of a stream's owner, renewed every "
                                                                      "second (or quarter of it); a stream whose owner "
                                                                      "died is taken over within it plus a second.")
    stream_timeline_retention_s: int = Field(3600, gt=0, description="How far back a stream's score timeline is "
                                                                     "kept (its Redis stream is trimmed).")
    stream_retention_s: int = Field(7 * 24 * 3600, gt=0, description="How long a stream's events are kept, and a "
                                                                     "stopped stream's record, events and "
                                                                     "timeline after it stopped.")

    _split_allowlist = field_validator("callback_allowlist", "stream_allowlist", mode="before")(split_commas)

    @field_validator("callback_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # VAD_CALLBACK_SECRET= (empty) means unset
        if len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"callback_secret must have at least {MIN_SECRET_CHARS} characters; generate one with "
                             "python -c 'import secrets; print(secrets.token_hex(32))'")
        return value
