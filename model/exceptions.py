"""Errors raised by the ``model`` package. Messages say what was wrong and what to do."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of a library's error, at most ``limit`` characters, for a reason a user reads.

    Libraries' messages run over many lines (C++ backtraces, FFmpeg's logs); an ``OSError`` (PyAV's
    ``FFmpegError`` is one) gives its ``strerror``, without the errno and file name around it. Every package
    that turns a library's error into its own uses this (``workers`` imports it from here).
    """
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]


class ModelError(Exception):
    """Base class of every error of the model package."""


class ConfigError(ModelError, ValueError):
    """A preset or config is unknown or inconsistent."""


class CheckpointError(ModelError):
    """An official checkpoint does not match the expected DSANet layout."""


class BundleError(ModelError):
    """A bundle file is missing, corrupt, of an unknown format version or fails its checksum."""


class WeightsNotFoundError(ModelError, FileNotFoundError):
    """Pretrained weights (CLIP or DSANet) are needed but not available locally."""


class InputError(ModelError, ValueError):
    """Features given to the model have the wrong shape, dtype or content."""


class EvaluationError(ModelError, ValueError):
    """Annotations, ground truth or predictions given to the evaluation protocol are missing or inconsistent."""


class DataError(ModelError, ValueError):
    """A feature list, feature file or label does not match the VadCLIP layout or the preset."""


class TrainingError(ModelError):
    """A training run cannot start or resume (missing CLIP weights, mismatching checkpoint, bad options)."""
