"""Domain errors of the API. Routes turn them into HTTP answers; nothing else raises HTTPException."""

from typing import ClassVar


class ServiceError(Exception):
    """Base class; ``status_code`` is the HTTP status a route answers with, ``headers`` go with it.

    Each class without subclasses is one ``code`` of the error body (:func:`service.api.errors.error_code`), and
    the first paragraph of its docstring is what the code means to a client: docs/service.md's list of codes is
    generated from them (``python -m vad.cli.settings_docs --write``).
    """

    status_code = 400
    headers: ClassVar[dict[str, str] | None] = None


class UploadRefused(ServiceError):
    """An upload refused before its body was read to the end. The answer closes the connection: without
    ``Connection: close`` the server would go on reading (and discarding) the rest of the body."""

    headers: ClassVar[dict[str, str] | None] = {"Connection": "close"}


class UploadTooLarge(UploadRefused):
    """The upload (or a JSON body) exceeds the size limit, ``VAD_MAX_UPLOAD_MB``: checked against
    ``Content-Length`` first, then while streaming."""

    status_code = 413


class UnsupportedMedia(UploadRefused):
    """The body is not ``multipart/form-data`` (nor a JSON source), or the file's first bytes are not a recognised
    video container (mp4/mov, mkv/webm, avi, mpeg-ts/ps, flv, ogg, asf); the content decides, not the name."""

    status_code = 415


class BadUpload(UploadRefused):
    """A malformed multipart body or ``Content-Length``, no ``file`` part or two, an empty file, an oversized form
    field, or an empty JSON body."""

    status_code = 400


class UploadStalled(UploadRefused):
    """The client stopped sending in the middle of the body for ``VAD_UPLOAD_IDLE_TIMEOUT_S``."""

    status_code = 408


class UploadStorageUnavailable(UploadRefused):
    """The upload storage (the object store, the upload directory) failed: the upload is refused at once, its
    body not read further; retry after ``Retry-After`` seconds."""

    status_code = 503


class InvalidOption(ServiceError):
    """A job option is refused: ``threshold`` is not a number from 0 to 1 (written as in JSON: ``0.5``, ``1e-1``),
    ``frame_scores`` not exactly ``true`` or ``false``, ``skip_unchanged`` not a number from 0 to 255, ``model`` not
    one the workers serve (once they announced theirs), ``callback_url`` or ``source`` not allowed by the
    deployment's allow-lists."""

    status_code = 422


class JobNotFound(ServiceError):
    """No such job, or another API key's job (the two look the same), or its record expired."""

    status_code = 404


class JobNotFinished(ServiceError):
    """The result of a job that is queued, running, failed (``detail`` gives the reason) or canceled."""

    status_code = 409


class StoreUnavailable(ServiceError):
    """Redis does not answer; retry after ``Retry-After`` seconds."""

    status_code = 503


class Unauthorized(ServiceError):
    """Only when ``VAD_API_KEYS`` is set, on every ``/v1`` route: the ``X-API-Key`` header is missing or matches no
    configured key (keys are compared as bytes in constant time; a non-ASCII key is simply another wrong key)."""

    status_code = 401


class StreamNotFound(ServiceError):
    """No such stream: it was deleted, is another API key's, or its retention ended."""

    status_code = 404


class InvalidStream(ServiceError):
    """A stream is refused: its URL is not a network URL of an allowed scheme or its host resolves outside
    ``VAD_STREAM_ALLOWLIST``, or ``model``, ``threshold`` or ``callback_url`` is refused."""

    status_code = 422


class CalibrationUnavailable(ServiceError):
    """``POST /v1/streams/{id}/calibrate``: the stream's timeline does not hold enough scores of the window asked for
    (too short, not scored yet, or older than ``VAD_STREAM_TIMELINE_RETENTION_S``)."""

    status_code = 409


class StreamsDisabled(ServiceError):
    """``POST /v1/streams`` on a deployment without ``VAD_STREAM_ALLOWLIST``: streams are off, the OpenAPI
    document has no such operation, and it answers as an undocumented method does, with ``Allow``."""

    status_code = 405


class EventNotFound(ServiceError):
    """No such event in the history: it never existed, belongs to another API key, its retention ended, or its job
    or stream was deleted."""

    status_code = 404


class EvidenceNotFound(ServiceError):
    """No evidence for that event id (none was kept, it expired, or it belongs to another API key)."""

    status_code = 404
