"""Errors raised by the ``model`` package. Messages say what was wrong and what to do."""


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
