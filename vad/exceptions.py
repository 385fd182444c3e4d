"""Errors of the shared contract (and of the command line, :mod:`vad.cli`)."""


class ContractError(Exception):
    """Base class of the contract's errors."""


class CallbackRefused(ContractError, ValueError):
    """The callback URL is not allowed; the message says why."""


class StackError(ContractError, RuntimeError):
    """A part of the local stack of ``vad serve`` / ``vad demo`` could not be started."""


class DemoClientError(ContractError, RuntimeError):
    """The service did not answer ``vad demo`` as expected (not ready in time, a refused upload, a failed job)."""


class StreamRefused(ContractError, ValueError):
    """The stream URL is not allowed (scheme, host, address outside the allow-list, streams off); says why."""


class BundleRefused(ContractError, ValueError):
    """A per-camera bundle change that its rules refuse (nothing in shadow, the shadow rule unmet); says why."""


class StorageError(ContractError, RuntimeError):
    """The upload storage refused an operation or is misconfigured (a missing object, credentials refused)."""


class StorageUnavailable(StorageError):
    """The upload storage does not answer (the object store is down or unreachable, scratch space is full): a
    transient failure, answered 503 by the API and retried by the workers."""


class SourceRefused(ContractError, ValueError):
    """A video source URL is not allowed, or what it serves is refused (too large, not a video, a 4xx answer)."""


class SourceUnavailable(ContractError, RuntimeError):
    """A video source could not be fetched for now (a timeout, a connection error, a 5xx answer): retried."""


class ContentRefused(ContractError, ValueError):
    """Bytes on their way into storage were refused (:class:`vad.storage.checked.CheckedStream`); the subclass says
    why, so that each caller answers in its own terms (413/415/400 for an upload, a refused source for a fetch)."""


class ContentTooLarge(ContentRefused):
    """More bytes than the limit."""


class NotAVideo(ContentRefused):
    """The first bytes are not those of a recognised video container."""


class EmptyContent(ContentRefused):
    """Not a single byte."""
