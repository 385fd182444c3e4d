"""`vad demo` from an empty cache, timed, and the acceptance of its model (issue #6).

One full run (build the demo bundle, start the local stack, analyse the held-out videos over HTTP) is shared by
both tests: the first checks what a newcomer sees, the second scores the results the service returned against
the generator's truth: frame AUC >= 0.95 and every event found within 1 s on at least 8 of 10 videos.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from vad.cli.stack import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BUDGET_S = 600.0  # issue #6: a full run from a fresh clone in under 10 minutes on 2 CPU cores


@dataclass(frozen=True)
class DemoRun:
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    out: Path
    cache: Path
    port: int


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> DemoRun:
    """`vad demo --no-serve` from an empty cache: the run's demo cache when nothing is in it and no other process
    claimed it (the later tests then take the model from there, and the run builds it once), else one of its own."""
    import fcntl

    from tests.conftest import DEMO_CLAIM
    from workers.demo.cache import cached_bundle
    from workers.demo.recipe import DemoRecipe

    if shutil.which("redis-server") is None:
        pytest.skip("vad demo starts an embedded redis-server, which is not installed")
    root = tmp_path_factory.mktemp("demo")
    claim = open(demo_cache / DEMO_CLAIM, "a")  # noqa: SIM115 - released when the bundle appears, not at a block's end
    try:
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shared = not any(p for p in demo_cache.iterdir() if not p.name.startswith("."))
        except BlockingIOError:  # another process is building into it
            shared = False
        if not shared:
            claim.close()
        cache = demo_cache if shared else root / "cache"
        drop = ("VAD_BUNDLE", "VAD_REDIS_URL", "REDIS_URL", "VAD_DEMO_CACHE", "VAD_MODELS", "VAD_API_KEYS")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(HF_HUB_OFFLINE="1", VAD_DEMO_CACHE=str(cache), VAD_DEVICE="cpu")
        port = free_port()
        out, err = root / "stdout.txt", root / "stderr.txt"
        started = time.monotonic()
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen([sys.executable, "-m", "vad", "demo", "--no-serve", "--port", str(port),
                                        "--out", str(root / "out")], env=env, stdout=stdout, stderr=stderr, text=True)
            try:
                while process.poll() is None:
                    if time.monotonic() - started > BUDGET_S + 120:
                        pytest.fail(f"vad demo ran over {BUDGET_S + 120:.0f} s")
                    if not claim.closed and cached_bundle(DemoRecipe(), cache) is not None:
                        claim.close()  # built: the tests waiting for the model go on while this run analyses
                    time.sleep(0.5)
            finally:
                if process.poll() is None:  # over time, or the test run interrupted: never leave it running
                    process.kill()
                    process.wait()
    finally:
        claim.close()
    seconds = time.monotonic() - started
    print(f"\nfull `vad demo --no-serve` from an empty cache: {seconds:.0f} s\n{out.read_text()}")
    return DemoRun(seconds, process.returncode, out.read_text(), err.read_text(), root / "out", cache, port)


def test_a_full_run_prints_events_writes_plots_and_the_page_url(demo_run: DemoRun) -> None:
    from model.bundle import read_bundle_metadata
    from workers.demo.cache import cached_bundle
    from workers.demo.recipe import DemoRecipe

    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    assert demo_run.seconds < BUDGET_S
    assert re.search(r"synthetic demo model \S+ \(built in \d+s", demo_run.stderr), demo_run.stderr[-3000:]
    assert len(re.findall(r"^    detected: ", demo_run.stdout, re.M)) == 10
    assert len(re.findall(r"^    truth: ", demo_run.stdout, re.M)) == 10
    assert f"web page: http://127.0.0.1:{demo_run.port}/" in demo_run.stdout
    assert "synthetic demo model" in demo_run.stdout
    assert len(list(demo_run.out.glob("heldout-*.png"))) == 10
    assert len(list((demo_run.out / "videos").glob("heldout-*.mp4"))) == 10
    cached = cached_bundle(DemoRecipe(), demo_run.cache)
    assert cached is not None
    meta = read_bundle_metadata(cached.path)
    assert meta["demo"] is True and meta["source"]["kind"] == "synthetic-demo"
    assert meta["source"]["validation_auc"] >= DemoRecipe().min_validation_auc  # a rejected run is never cached
    assert meta["clip"]["model_name"] == "demo-random"
    assert not list(cached.path.parent.glob(".build-*")), "the build's scratch folder was left behind"


def test_the_demo_model_finds_the_injected_events(demo_run: DemoRun, tmp_path: Path) -> None:
    from vad.schema import AnalysisResult
    from workers.demo.build import generate
    from workers.demo.check import check_video, frame_auc
    from workers.demo.recipe import DemoRecipe, plan_videos

    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    recipe = DemoRecipe()
    truth = generate(recipe, plan_videos(recipe, "heldout"), tmp_path)  # deterministic: the run's videos again
    results = [AnalysisResult.model_validate_json((demo_run.out / f"{name}.json").read_text()) for name in truth]
    videos = list(truth.values())
    assert all(r.model.demo and r.model.label == "synthetic demo model" for r in results)
    checks = [check_video(r, v) for r, v in zip(results, videos, strict=True)]
    auc, matched = frame_auc(results, videos), sum(c.matched for c in checks)
    classes = sum(c.classes_right for c in checks)
    print(f"\nheld-out frame AUC {auc:.4f}; events within 1 s on {matched}/{len(checks)} videos; "
          f"right class on {classes} matched events")
    assert len(checks) == 10
    assert auc >= 0.95
    assert matched >= 8
