"""Shared fixtures: reduced-size DSANet configs and random CLIP weights (no downloads)."""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # open_clip must never wait on the network in tests
# the workers the tests start skip the live-precision probe (a minute with ViT-B/16, seconds with the demo model, and
# a cache in the user's home); tests/unit/workers/encode/test_precision_probe.py runs it
os.environ.setdefault("VAD_STREAM_PRECISION_PROBE", "false")
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    # pytest-xdist: each worker process gets its share of the cores for torch's (OpenMP) threads, inherited by the
    # processes its tests start. With every worker on all cores, their spinning threads fight: the model tests took
    # 86 s on 2 cores with 2 workers, 50 s with one thread each.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

import pytest

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
REDIS_URL = "redis://127.0.0.1:6379/0"  # the machine's Redis (scripts/ensure-redis.sh); tests use unique key prefixes
INTEGRATION_DIRS = {"integration", "e2e"}

# A CLIP small enough for unit tests, with the OpenAI layout and QuickGELU. The vocabulary keeps
# its real size so that the real tokenizer's ids are valid.
TINY_CLIP = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 4},
}


def answers(url: str, path: str = "/readyz", timeout_s: float = 2.0) -> bool:
    """Whether ``url + path`` answers 200 (``False`` while the server is not listening or not ready)."""
    from vad.cli.stack import not_ready

    return not_ready(url, path, timeout_s) is None


@contextmanager
def running_api(root: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """uvicorn serving the API alone (no worker) on a free port, on the machine's Redis under a unique key prefix and
    queue, with ``env`` (``VAD_*`` settings) added; yields its URL and process, and removes its keys after.

    The process is killed on the way out only if it still runs (a test may have stopped it)."""
    import redis

    from vad.cli.stack import free_port, wait_for

    tag, port = f"api-{secrets.token_hex(4)}", free_port()
    settings = {"VAD_REDIS_URL": REDIS_URL, "VAD_KEY_PREFIX": f"{tag}:", "VAD_QUEUE_NAME": tag,
                "VAD_STORAGE_DIR": str(root / "uploads"), **env}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port)], env={**os.environ, "PYTHONPATH": str(TESTS.parent),
                                                                         **settings},
                               cwd=TESTS.parent, stdout=(root / "api.log").open("w"), stderr=subprocess.STDOUT)
    url, conn = f"http://127.0.0.1:{port}", redis.Redis.from_url(REDIS_URL)
    try:
        wait_for(lambda: answers(url, "/healthz"), 60, "the API", process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        keys = [*conn.scan_iter(f"{tag}:*"), *conn.scan_iter(f"*{tag}*")]
        if keys:
            conn.delete(*keys)


def tiny_config(preset: str = "ucf", width: int = 64):
    """The preset's structure (classes, layers, window, adapters, temperature) at a reduced width."""
    from model.config import SGNMConfig, TextTowerConfig, load_preset

    cfg = load_preset(preset)
    text = TextTowerConfig(width=TINY_CLIP["text_cfg"]["width"], layers=TINY_CLIP["text_cfg"]["layers"],
                           heads=TINY_CLIP["text_cfg"]["heads"])
    return cfg.replace(visual_width=width, text=text,
                       sgnm=SGNMConfig(num_prototypes=4, heads=8, extractor_depth=1, decoder_depth=2, normal_ratio=0.8))


def official_manifest(preset: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the authors' released checkpoint of ``preset`` (``tests/fixtures``; every tensor float32)."""
    import json

    raw = json.loads((FIXTURES / f"official_state_dict_{preset}.json").read_text())
    assert all(dtype == "float32" for _, dtype in raw.values())
    return {k: tuple(shape) for k, (shape, _) in raw.items()}


def random_clip_state_dict(clip_config: dict | None = None, seed: int = 0) -> dict:
    """OpenAI-named CLIP weights with random values (the real architecture when ``clip_config`` is None)."""
    import open_clip
    import torch

    from model.bundle import OPENAI_VIT_B_16

    cfg = clip_config or OPENAI_VIT_B_16["config"]
    torch.manual_seed(seed)
    clip = open_clip.model.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"],
                                quick_gelu=cfg.get("quick_gelu", True))
    return {k: v.detach().clone() for k, v in clip.state_dict().items()}


def tiny_bundle(preset: str = "ucf", seed: int = 0):
    """A complete bundle of a randomly initialised reduced-width model with a tiny CLIP.

    Built once per ``(preset, seed)`` in a process (building one computes the text features through a CLIP text
    tower: about 1 s, 3-4 s on a loaded machine); each call returns its own deep copy (a test may change it) and
    leaves torch's random generator as a fresh build would.
    """
    import copy

    import torch

    bundle, rng_after = _built_tiny_bundle(preset, seed)
    torch.set_rng_state(rng_after)
    return copy.deepcopy(bundle)


@functools.cache
def _built_tiny_bundle(preset: str, seed: int):  # type: ignore[no-untyped-def]
    import torch

    from model.factory import bundle_from_model, create_model, load_clip_text_weights

    torch.manual_seed(seed)
    model = create_model(tiny_config(preset), with_text_tower=True)
    clip_sd = random_clip_state_dict(TINY_CLIP, seed)
    load_clip_text_weights(model, clip_sd)
    bundle = bundle_from_model(model, clip_sd, clip={"model_name": "custom", "pretrained": None, "config": TINY_CLIP},
                               source={"kind": "random-test-weights"})
    return bundle, torch.get_rng_state()


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's cache of the synthetic demo model, where :func:`demo_bundle` builds it once for every pytest
    process of the run (pytest-xdist's workers share it; ``VAD_TEST_DEMO_CACHE`` names it instead: scripts/test.sh's
    two phases share one). Never the user's cache, which a test only reads."""
    if given := os.environ.get("VAD_TEST_DEMO_CACHE"):  # scripts/test.sh: one for both of its pytest runs
        path = Path(given)
    else:
        root = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            root = root.parent  # the run's base folder, above each worker's own
        path = root / "demo-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


DEMO_CLAIM = ".claim"  # a lock file in the run's demo cache: see demo_bundle


@pytest.fixture(scope="session")
def demo_bundle(demo_cache: Path) -> Path:
    """The synthetic demo model's bundle: from ``VAD_DEMO_CACHE`` or the user's cache where it was built before the
    run, else from the run's cache, built once for the run (about 40 s on one free core; a process that asks while
    another builds waits for it: :func:`workers.demo.cache.ensure_demo_bundle`).

    tests/e2e/test_demo.py times ``vad demo`` from an empty cache. It builds into the run's cache when it finds the
    cache empty and unclaimed, holding :data:`DEMO_CLAIM` exclusively until the bundle is there; this fixture waits on
    that claim (shared) and holds it while it builds, so that test_demo.py then takes an empty cache of its own."""
    import fcntl

    from workers.demo.cache import cached_bundle, default_cache_dir, ensure_demo_bundle
    from workers.demo.recipe import DemoRecipe

    recipe = DemoRecipe()
    if (found := cached_bundle(recipe, Path(os.environ.get("VAD_DEMO_CACHE") or default_cache_dir()))) is not None:
        return found.path
    with open(demo_cache / DEMO_CLAIM, "a") as claim:
        fcntl.flock(claim, fcntl.LOCK_SH)
        return ensure_demo_bundle(recipe, demo_cache).path


@pytest.fixture(params=["ucf", "xd"])
def preset(request) -> str:
    return request.param


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--timing", choices=("include", "skip", "only"), default="include",
                     help="the tests marked `timing` (latency, lag, drops, stop times): run them with the rest "
                          "(include, the default), leave them out (skip) or run only them (only). scripts/test.sh "
                          "runs the rest in parallel with --timing=skip, then these without the rest with "
                          "--timing=only.")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark integration tests (those under tests/integration and tests/e2e, and those that use a live Redis), and
    apply ``--timing``.

    ``pytest -m "not integration"`` then runs the unit tests on a machine without Redis.
    """
    for item in items:
        in_dir = item.path.is_relative_to(TESTS) and item.path.relative_to(TESTS).parts[0] in INTEGRATION_DIRS
        if in_dir or "live_redis" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
    timing = config.getoption("--timing")
    if timing != "include":
        keep = [item for item in items if (item.get_closest_marker("timing") is not None) == (timing == "only")]
        if len(keep) < len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in keep])
            items[:] = keep


@pytest.fixture
def live_redis():
    """A connection to the machine's Redis; every test that uses it (directly or through a fixture) is marked
    ``integration``. Skips when no Redis answers (``scripts/ensure-redis.sh`` starts one)."""
    import redis

    conn = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        conn.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL} (scripts/ensure-redis.sh starts one)")
    yield conn
    conn.close()


@pytest.fixture
def job_ctx(tmp_path, live_redis):
    """The workers' job context on the machine's Redis, under a key prefix of its own (removed afterwards), installed
    as the process's context so the RQ job functions use it; uploads under ``tmp_path``."""
    import secrets

    import workers.runtime.context as module
    from workers.runtime.context import JobContext
    from workers.settings import WorkerSettings

    prefix = f"test-{secrets.token_hex(4)}:"
    context = JobContext(WorkerSettings(key_prefix=prefix, storage_dir=tmp_path), live_redis)
    previous, module._context = module._context, context
    yield context
    module._context = previous
    keys = list(live_redis.scan_iter(f"{prefix}*"))
    if keys:
        live_redis.delete(*keys)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two threads contend and train several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
