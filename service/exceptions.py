"""Domain errors of the API. Routes turn them into HTTP answers; nothing else raises HTTPException."""

from typing import ClassVar


class ServiceError(Exception):
    """Base class; ``status_code`` is the HTTP status a route answers with, ``headers`` go with it."""

    status_code = 400
    headers: ClassVar[dict[str, str] | None] = None


class UploadRefused(ServiceError):
    """An upload refused before its body was read to the end. The answer closes the connection: without
    ``Connection: close`` the server would go on reading (and discarding) the rest of the body."""

    headers: ClassVar[dict[str, str] | None] = {"Connection": "close"}


class UploadTooLarge(UploadRefused):
    status_code = 413


class UnsupportedMedia(UploadRefused):
    status_code = 415


class BadUpload(UploadRefused):
    status_code = 400


class UploadStalled(UploadRefused):
    """The client stopped sending in the middle of the body."""

    status_code = 408


class UploadStorageUnavailable(UploadRefused):
    """The upload storage (the object store, the upload directory) failed: the upload is refused at once, and the
    rest of its body is not read."""

    status_code = 503


class InvalidOption(ServiceError):
    status_code = 422


class JobNotFound(ServiceError):
    status_code = 404


class JobNotFinished(ServiceError):
    status_code = 409


class StoreUnavailable(ServiceError):
    """Redis (or the storage) does not answer."""

    status_code = 503


class Unauthorized(ServiceError):
    status_code = 401


class StreamNotFound(ServiceError):
    status_code = 404


class InvalidStream(ServiceError):
    """The stream URL or an option is refused (the URL policy, an unknown model, a bad event id)."""

    status_code = 422


class StreamsDisabled(InvalidStream):
    """The deployment has no stream allow-list."""



class EvidenceNotFound(ServiceError):
    """No evidence for that event id (none was kept, it expired, or it belongs to another API key)."""

    status_code = 404
