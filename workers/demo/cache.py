"""The demo bundle's cache: built once per recipe into ``CACHE_DIR/<recipe hash>/bundle.safetensors``.

A bundle whose recorded recipe hash is not the recipe's (or that fails to load its header) is rebuilt. The
bundle is written atomically (:func:`model.bundle.save_bundle`), so an interrupted build leaves no file that
looks finished; its scratch folder (videos, features, the training run) is removed either way. One process builds
at a time (a lock file beside the bundle): a second `vad demo`, or tests sharing a cache, wait for the first and
take its bundle instead of building the same one beside it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from model.bundle import read_bundle_metadata, save_bundle
from model.exceptions import BundleError
from workers.demo.build import StepFn, build_demo_bundle
from workers.demo.recipe import DemoRecipe

BUNDLE_NAME = "bundle.safetensors"


@dataclass(frozen=True)
class DemoBundle:
    """Where the demo bundle is and how it got there.

    Attributes:
        path: The bundle file.
        built: ``True`` when this call built it, ``False`` when it came from the cache.
        seconds: Build time (0 from the cache).
        validation_auc: Frame AUC on the validation videos, as recorded at build time.
    """

    path: Path
    built: bool
    seconds: float
    validation_auc: float | None


def default_cache_dir() -> Path:
    """``~/.cache/dsanet-vad/demo``."""
    return Path.home() / ".cache" / "dsanet-vad" / "demo"


def bundle_path(recipe: DemoRecipe, cache_dir: str | Path) -> Path:
    """Where the bundle of ``recipe`` lives in ``cache_dir``."""
    return Path(cache_dir) / recipe.digest() / BUNDLE_NAME


def cached_bundle(recipe: DemoRecipe, cache_dir: str | Path) -> DemoBundle | None:
    """The cached bundle of ``recipe``, or ``None`` when it is absent, unreadable or of another recipe."""
    path = bundle_path(recipe, cache_dir)
    if not path.is_file():
        return None
    try:
        source = read_bundle_metadata(path)["source"]
    except BundleError:
        return None
    if not isinstance(source, dict) or source.get("recipe_hash") != recipe.digest():
        return None
    return DemoBundle(path, built=False, seconds=0.0, validation_auc=source.get("validation_auc"))


def ensure_demo_bundle(recipe: DemoRecipe, cache_dir: str | Path, *, rebuild: bool = False,
                       step: StepFn | None = None, show_training: bool = False,
                       on_wait: Callable[[], None] | None = None, notify: Callable[[str], None] | None = None
                       ) -> DemoBundle:
    """The demo bundle of ``recipe``: from the cache, or built now (and cached).

    Args:
        recipe: What to build.
        cache_dir: The cache root (created).
        rebuild: Build even when a cached bundle exists.
        step: Progress of the video and feature stages.
        show_training: Show the trainer's progress bars on stderr.
        on_wait: Called once if another process is building into this cache: this call waits for it, then
            takes its bundle (or builds, with ``rebuild``, or when that build failed).
        notify: Called with a sentence when a training run is rejected and trained again.

    Raises:
        DemoBuildFailed: The model did not train (nothing is cached).
    """
    if not rebuild and (found := cached_bundle(recipe, cache_dir)) is not None:
        return found
    path = bundle_path(recipe, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(path.parent / ".build.lock", on_wait):
        if not rebuild and (found := cached_bundle(recipe, cache_dir)) is not None:  # built while we looked
            return found
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
        try:
            outcome = build_demo_bundle(recipe, work, step=step, show_training=show_training, notify=notify)
            save_bundle(outcome.bundle, path)
            _write_json(path.parent / "recipe.json", {"recipe": asdict(recipe), "source": outcome.bundle.source,
                                                      "build_seconds": round(outcome.seconds, 1)})
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return DemoBundle(path, built=True, seconds=outcome.seconds, validation_auc=outcome.validation_auc)


@contextmanager
def _build_lock(path: Path, on_wait: Callable[[], None] | None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (the kernel releases it when the holder exits, however it exits)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(path: Path, doc: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
