"""Errors raised by the worker pipeline (video → frames → features → model → result).

Every error a worker raises on purpose derives from :class:`WorkerError`, so a job runner can tell a
bad input or an exhausted budget (report it to the user) from a bug (let it crash loudly). Messages
say what was wrong and what to do about it; they are meant to reach the user unchanged.
"""

from __future__ import annotations

from pathlib import Path

from model.exceptions import WeightsNotFoundError


class WorkerError(Exception):
    """Base class of the errors the worker pipeline raises on purpose."""


class VideoError(WorkerError):
    """The file cannot be used as a video: unreadable, unsupported, corrupt, audio-only or empty.

    The errors about one file name it by ``name``, the name its user knows (an upload is stored as ``video``
    under its job's folder; the service passes the upload's file name), by default the file's own name.

    Attributes:
        path: The file that was rejected.
        reason: What was wrong with it, in words a user understands.
        name: The name the message gives the file.
    """

    def __init__(self, path: str | Path, reason: str, hint: str | None = None, *, name: str | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        self.name = name or self.path.name
        message = f"cannot use {self.name!r} as a video: {reason}"
        if hint:
            message = f"{message}. {hint}"
        super().__init__(message)


class DecodeTimeout(WorkerError, TimeoutError):
    """Decoding used up its time budget; the file may be hostile or far larger than expected."""

    def __init__(self, path: str | Path, timeout_s: float, elapsed_s: float, *, name: str | None = None) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.elapsed_s = elapsed_s
        self.name = name or self.path.name
        message = (
            f"decoding {self.name!r} took {elapsed_s:.2f} s, over its budget of {timeout_s:.2f} s; "
            "raise timeout_s for long or high-resolution videos, or re-encode the file"
        )
        super().__init__(message)


class DecodeCancelled(WorkerError):
    """Decoding stopped because the caller set the stop event (job cancelled or worker shutting down)."""

    def __init__(self, path: str | Path, *, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        super().__init__(f"decoding {self.name!r} was cancelled by the caller")


class DecoderUnavailable(WorkerError):
    """A decoding backend was asked for by name but cannot be used in this environment."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        message = f"video backend {backend!r} is unavailable ({reason}); use backend='auto' or backend='pyav'"
        super().__init__(message)


class DecoderFailure(WorkerError):
    """One decoding backend failed on a file that another backend may still decode.

    ``backend='auto'`` catches it and falls back (decord → PyAV); when no backend is left the caller
    gets a :class:`VideoError` instead.
    """

    def __init__(self, backend: str, path: str | Path, reason: str, *, name: str | None = None) -> None:
        self.backend = backend
        self.path = Path(path)
        self.reason = reason
        self.name = name or self.path.name
        super().__init__(f"the {backend} backend failed on {self.name!r}: {reason}")

    def named(self, name: str | None) -> DecoderFailure:
        """The same failure, naming the file ``name`` (the name its user knows; the file's own when ``None``)."""
        return DecoderFailure(self.backend, self.path, self.reason, name=name)


class ConfigurationError(WorkerError, ValueError):
    """The worker is not set up to run: no model bundle configured, or settings that do not fit the model."""


class ClipWeightsError(WorkerError):
    """CLIP image weights were found but cannot be used (unreadable file, no image tower, wrong architecture)."""


class ClipWeightsMissing(ClipWeightsError, WeightsNotFoundError):
    """No allowed source has the CLIP image weights; the message says the three ways to get them."""


class DemoBuildFailed(WorkerError):
    """The synthetic demo model did not train: no training run reached the recipe's validation AUC."""
