"""Domain errors of the API. Routes turn them into HTTP answers; nothing else raises HTTPException."""


class ServiceError(Exception):
    """Base class; ``status_code`` is the HTTP status a route answers with."""

    status_code = 400


class UploadTooLarge(ServiceError):
    status_code = 413


class UnsupportedMedia(ServiceError):
    status_code = 415


class BadUpload(ServiceError):
    status_code = 400


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
