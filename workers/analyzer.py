"""The whole worker pipeline: video → frames → CLIP features → DSANet → events → :class:`~vad.schema.AnalysisResult`.

>>> analyzer = Analyzer("ucf.safetensors")                          # doctest: +SKIP
>>> result = analyzer.analyze("clip.mp4", progress=print, threshold=0.6)
>>> result.events, result.summary.top_classes

An :class:`Analyzer` loads the bundle, the CLIP image encoder and DSANet once; ``analyze`` can then be
called for any number of videos (one at a time: it is not thread-safe). ``vad analyze`` and the RQ
worker both run exactly this.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import Bundle, load_bundle
from model.inference import DSANetPredictor
from vad.schema import AnalysisResult
from workers.encode.clip_encoder import ClipImageEncoder, resolve_device
from workers.encode.features import FeatureExtractor, ProgressFn
from workers.encode.preprocess import view_index
from workers.exceptions import ConfigurationError
from workers.result import ModelIdentity, build_result
from workers.settings import WorkerSettings

NO_BUNDLE = ("no model bundle configured: pass --bundle or set VAD_BUNDLE. Import the authors' checkpoint with "
             "`vad import-checkpoint model_ucf.pth --preset ucf -o ucf.safetensors`, or train one with `vad train`")


def file_sha256(path: str | Path, chunk: int = 2**20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _Monotone:
    """Forwards progress, never letting the fraction go down; swallows nothing (callback errors propagate)."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self.callback = callback
        self.fraction = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        self.fraction = max(self.fraction, min(1.0, fraction))
        if self.callback is not None:
            self.callback(stage, self.fraction)


class Analyzer:
    """Loads a DSANet bundle, its CLIP image encoder and the predictor once, and analyses videos.

    Args:
        bundle: A bundle (path or loaded); ``None`` uses ``settings.bundle`` (``VAD_BUNDLE``).
        settings: Worker settings; ``None`` reads them from the environment.
        encoder: A ready encoder to share (e.g. between analyzers of several bundles); built from the
            bundle and settings when omitted.

    Raises:
        ConfigurationError: No bundle configured, or the encoder's width does not match the model.
        BundleError: The bundle file is missing, corrupt or fails its checksum.
        ClipWeightsMissing: No CLIP image weights (the message says how to get them).
    """

    def __init__(self, bundle: Bundle | str | Path | None = None, settings: WorkerSettings | None = None,
                 *, encoder: ClipImageEncoder | None = None) -> None:
        self.settings = settings if settings is not None else WorkerSettings()
        source = bundle if bundle is not None else self.settings.bundle
        if source is None:
            raise ConfigurationError(NO_BUNDLE)
        loaded = source if isinstance(source, Bundle) else load_bundle(source)
        device = resolve_device(self.settings.device)
        self.encoder = encoder or ClipImageEncoder.create(self.settings, loaded, device)
        if self.encoder.embed_dim != loaded.config.visual_width:
            raise ConfigurationError(f"the CLIP encoder {self.encoder.name} gives {self.encoder.embed_dim}-d features "
                                     f"but the model expects {loaded.config.visual_width}-d")
        self.model = ModelIdentity(
            preset=loaded.config.name, class_names=list(loaded.class_names),
            bundle_sha256=loaded.sha256 or loaded.weights_sha256(), demo=loaded.demo,
            dsanet_precision=self.settings.precision,
        )
        # the image tower now lives in the encoder: drop the bundle's CLIP tensors from what we keep
        self.bundle = dataclasses.replace(loaded, clip_state_dict={})
        self.predictor = DSANetPredictor(self.bundle, device=str(device), precision=self.settings.precision)
        self.extractor = FeatureExtractor(self.encoder, self.settings)

    def view(self, settings: WorkerSettings | None = None) -> int:
        """Ten-crop index of the view embedded: the ``crop`` setting, or the preset's test crop for ``auto``."""
        s = settings or self.settings
        return view_index(s.view_for(self.bundle.config.training.test_crop))

    def analyze(self, path: str | Path, *, filename: str | None = None, sha256: str | None = None,
                progress: ProgressFn | None = None, stop: threading.Event | None = None,
                on_features: Callable[[np.ndarray], None] | None = None, **overrides: Any) -> AnalysisResult:
        """Analyse one video.

        Args:
            path: The video file.
            filename: Name shown in the result and in error messages, e.g. the upload's file name (defaults to
                the file's name).
            sha256: SHA-256 of the file, recorded in the result; computed here when not given (the service
                already has it from the upload).
            progress: ``progress(stage, fraction)`` with stages ``decoding``, ``encoding``, ``scoring``
                and ``done``; the fraction never decreases and ends at 1.0.
            stop: Set from another thread to cancel (raises :class:`~workers.exceptions.DecodeCancelled`).
            on_features: Called with the ``[n, D]`` snippet features of the embedded view (the VadCLIP format),
                e.g. to keep them for verdicts on the result's events.
            **overrides: Per-job settings (``threshold``, ``frame_scores``, ``frame_pick``, ``crop``…; see
                :data:`~workers.settings.JOB_FIELDS`).

        Returns:
            The result, valid against :class:`vad.schema.AnalysisResult`.

        Raises:
            VideoError: The file is not a usable video (the message is meant for the user).
            DecodeTimeout: Decoding took longer than ``decode_timeout_s``.
            DecodeCancelled: ``stop`` was set.
            ValueError: An unknown or invalid override.
        """
        started = time.perf_counter()
        s = self.settings.with_overrides(**overrides)
        report = _Monotone(progress)
        report("decoding", 0.0)
        view = self.view(s)
        feats = self.extractor.extract(path, (view,), settings=s, progress=report, stop=stop, span=(0.0, 0.9),
                                       name=filename)
        report("scoring", 0.9)
        model_start = time.perf_counter()
        scores = self.predictor.score(feats.features[0])
        if on_features is not None:
            on_features(np.asarray(feats.features[0], dtype=np.float32))
        model_s = time.perf_counter() - model_start
        if sha256 is None:
            sha256 = file_sha256(path)  # the decoder accepted it, so it is a readable file
        result = build_result(feats=feats, scores=scores, model=self.model, encoder=self.encoder, settings=s,
                              view=view, filename=filename, sha256=sha256, model_s=model_s,
                              total_s=time.perf_counter() - started)
        report("done", 1.0)
        return result
