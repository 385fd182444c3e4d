"""What a worker process keeps between jobs: settings, a Redis connection and its loaded models."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import redis

from vad.keys import Keys
from vad.storage import SCRATCH_DIR, Scratch, Storage, open_storage
from workers.exceptions import ConfigurationError
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    from workers.analyzer import Analyzer
    from workers.encode.clip_encoder import ClipImageEncoder
    from workers.encode.precision_probe import PrecisionChoice

log = logging.getLogger(__name__)
DEFAULT_MODEL = "default"


def model_paths(settings: WorkerSettings) -> dict[str, str]:
    """The bundles a worker serves, by model name: ``models``, and ``bundle`` as ``default``.

    Raises:
        ConfigurationError: No model is configured.
    """
    paths = {name: str(path) for name, path in settings.models.items()}
    if settings.bundle is not None:
        paths.setdefault(DEFAULT_MODEL, str(settings.bundle))
    if not paths:
        raise ConfigurationError("no model configured: set VAD_BUNDLE to a bundle (`vad import-checkpoint` "
                                 "converts the authors' checkpoint; `vad demo` builds a synthetic demo model)")
    return paths


class JobContext:
    """Models are loaded once per process (:meth:`load_models`), then shared by every job."""

    def __init__(self, settings: WorkerSettings, conn: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = conn if conn is not None else redis.Redis.from_url(settings.redis_url)
        self.keys = Keys(settings.key_prefix)
        self._analyzers: dict[str, Analyzer] = {}
        self._stream_encoders: dict[str, tuple[ClipImageEncoder, PrecisionChoice]] = {}
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        """The upload storage (the local directory or the object store), opened on first use."""
        if self._storage is None:
            self._storage = open_storage(self.settings)
        return self._storage

    @property
    def scratch(self) -> Scratch:
        """This worker host's own space for fetched videos (``storage_dir/.scratch``)."""
        return Scratch(self.settings.storage_dir / SCRATCH_DIR)

    def model_paths(self) -> dict[str, str]:
        return model_paths(self.settings)

    @property
    def default_model(self) -> str:
        paths = self.model_paths()
        return DEFAULT_MODEL if DEFAULT_MODEL in paths else next(iter(paths))

    def load_models(self) -> None:
        """Load every configured model now (so the first job does not pay for it) and announce them.

        Models whose CLIP image towers are identical (bundles imported from the authors' UCF and XD
        checkpoints carry the same ViT-B/16) share one encoder in memory.
        """
        from model.bundle import load_bundle
        from workers.analyzer import Analyzer
        from workers.encode.clip_encoder import ClipImageEncoder
        from workers.encode.clip_weights import resolve_clip_weights

        encoders = {a.encoder.weights_sha256: a.encoder for a in self._analyzers.values()}
        for name, path in self.model_paths().items():
            if name in self._analyzers:
                continue
            log.info("loading model %s from %s", name, path)
            bundle = load_bundle(path)
            weights = resolve_clip_weights(bundle, self.settings, bundle.clip)
            if weights.sha256 not in encoders:
                encoders[weights.sha256] = ClipImageEncoder.create(self.settings, bundle, weights=weights)
            self._analyzers[name] = Analyzer(bundle, self.settings, encoder=encoders[weights.sha256])
        self.redis.hset(self.keys.models, mapping={
            name: json.dumps({"preset": a.model.preset, "classes": a.model.class_names, "demo": a.model.demo,
                              "bundle_sha256": a.model.bundle_sha256})
            for name, a in self._analyzers.items()})

    def stream_encoder(self, analyzer: Analyzer) -> tuple[ClipImageEncoder, PrecisionChoice]:
        """The CLIP encoder live streams of ``analyzer``'s model use, and how its precision was chosen (the
        precision probe's, :mod:`workers.encode.precision_probe`): one per CLIP tower, decided once."""
        from workers.encode.precision_probe import stream_encoder

        sha = analyzer.encoder.weights_sha256
        if sha not in self._stream_encoders:
            self._stream_encoders[sha] = stream_encoder(analyzer.encoder, self.settings)
        return self._stream_encoders[sha]

    def prepare_streams(self) -> None:
        """Decide the live streams' encoders now (the precision probe runs at start, not at the first stream)."""
        for analyzer in self._analyzers.values():
            self.stream_encoder(analyzer)

    @property
    def stream_precisions(self) -> dict[str, str]:
        """``{precision: how it was chosen}`` of the streams' encoders decided so far."""
        return {encoder.precision: choice.source for encoder, choice in self._stream_encoders.values()}

    def analyzer(self, name: str | None) -> Analyzer:
        name = name or self.default_model
        if name not in self.model_paths():
            raise ConfigurationError(f"unknown model {name!r}; this worker serves {', '.join(self.model_paths())}")
        if name not in self._analyzers:
            self.load_models()
        return self._analyzers[name]


_context: JobContext | None = None


def install_context(ctx: JobContext) -> None:
    global _context
    _context = ctx


def get_context() -> JobContext:
    """The process's context; built from the environment on first use (e.g. under a plain ``rq worker``)."""
    global _context
    if _context is None:
        _context = JobContext(WorkerSettings())
    return _context
