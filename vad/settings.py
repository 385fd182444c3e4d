"""Settings the API and the workers share (Redis, queue, storage, retention, callbacks): defined once.

:class:`service.settings.ServiceSettings` and :class:`workers.settings.WorkerSettings` extend this
class, so a deployment sets ``VAD_REDIS_URL`` (and the rest) once for both.
"""

from __future__ import annotations

import re
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
    storage_dir: Path = Field(Path("data/uploads"), description="Local storage (no VAD_STORAGE_URL): where uploads are "
                                                                "stored, shared by the API and the workers. With "
                                                                "VAD_STORAGE_URL: a worker's own scratch space for "
                                                                "the video it analyses (unshared).")
    storage_url: str | None = Field(
        None, description="s3://bucket/prefix: uploads are objects <prefix>/<job id>/video in this bucket of an "
                          "S3-compatible store, so API and workers share nothing but Redis and the store. Endpoint, "
                          "region and credentials come from VAD_STORAGE_ENDPOINT_URL and the standard AWS_* "
                          "variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION). Unset: the local "
                          "directory storage_dir.")
    storage_endpoint_url: str | None = Field(
        None, description="URL of an S3-compatible store (SeaweedFS, MinIO, Ceph...), e.g. http://seaweedfs:8333; "
                          "path-style addressing is used with it. Unset: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, "
                          "else AWS S3 itself.")
    storage_part_mb: int = Field(8, ge=5, le=512, description="Part size of the multipart upload an upload streams "
                                                              "into (S3's minimum is 5): the API holds at most about "
                                                              "one part per upload in memory.")
    storage_timeout_s: float = Field(10.0, gt=0, description="Connect and read timeout of one request to the object "
                                                             "store.")
    storage_retries: int = Field(2, ge=0, le=10, description="Retries of a request to the object store after a "
                                                             "connection error, a timeout or a 5xx answer.")
    max_upload_mb: float = Field(2048, gt=0, description="Largest accepted upload, in MiB (413 above); also the "
                                                         "largest video a worker fetches from a source URL.")
    result_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="How long results and job records are kept.")
    upload_retention_s: int = Field(0, ge=0, description="Keep an upload this long after its job ends (0: delete "
                                                         "at once).")
    callback_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts callback URLs may point to (comma-separated: host names, "
                                          "'*.example.com', addresses, CIDRs). Empty: callbacks are refused.")
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
    # adaptation from verdicts (docs/alerts.md): the shadow rule, applied by the API's promote and the workers alike
    adapt_shadow_min_snippets: int = Field(2000, ge=1, description="Snippets a candidate scores in shadow, beside "
                                                                   "the active model, before it may replace it "
                                                                   "(about 18 minutes at 30 fps).")
    adapt_auto_promote: bool = Field(True, description="The stream's worker promotes a shadow bundle as soon as the "
                                                       "shadow rule holds (docs/alerts.md); off: only POST "
                                                       "/v1/streams/{id}/bundles/promote does.")

    source_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts https:// video sources (POST /v1/videos with JSON {\"source\": "
                                          "...}) may be fetched from (comma-separated: host names, "
                                          "'*.example.com', addresses, CIDRs); redirects must stay on them. Empty: "
                                          "https sources are refused.")
    source_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Buckets (or bucket/prefix patterns, 'media/cams/*') s3:// video sources "
                                          "may be read from, with the storage's endpoint and credentials "
                                          "(comma-separated). Empty: s3 sources are refused.")
    source_allow_private: bool = Field(False, description="Allow https sources on private/loopback addresses.")
    source_timeout_s: float = Field(30.0, gt=0, description="Connect timeout of a source fetch, and the longest "
                                                            "wait for its next bytes (a stalled source fails).")

    _split_allowlist = field_validator("callback_allowlist", "stream_allowlist", "source_allowlist",
                                       "source_buckets", mode="before")(split_commas)

    @field_validator("storage_url")
    @classmethod
    def _storage_url_is_s3(cls, value: str | None) -> str | None:
        if not value:
            return None  # VAD_STORAGE_URL= (empty) means the local directory
        bucket = value.removeprefix("s3://").split("/", 1)[0]
        if not value.startswith("s3://") or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ValueError(f"storage_url must be s3://bucket[/prefix] with a valid bucket name (3-63 characters: "
                             f"a-z, 0-9, '.', '-'), not {value!r}; leave it unset for the local directory")
        return value.rstrip("/")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @field_validator("callback_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # VAD_CALLBACK_SECRET= (empty) means unset
        if len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"callback_secret must have at least {MIN_SECRET_CHARS} characters; generate one with "
                             "python -c 'import secrets; print(secrets.token_hex(32))'")
        return value
