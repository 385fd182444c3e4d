"""BatchScheduler on a tiny random bundle: batched scoring across streams equals each stream scored alone, and a
fast stream does not starve slow ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from model.bundle import Bundle
from tests.conftest import tiny_bundle
from workers.settings import WorkerSettings
from workers.stream import OnlineScorer, StreamEngine
from workers.stream.batch_scheduler import BatchScheduler, SnippetRequest

SETTINGS = WorkerSettings(device="cpu", clip_precision="fp32", threshold=0.0, stream_hold=0)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return tiny_bundle("ucf", seed=5)


@pytest.fixture(scope="module")
def engine(bundle: Bundle) -> StreamEngine:
    return StreamEngine(bundle, SETTINGS)


def _frames(seed: int, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(count)]


def _run_streams(scheduler: BatchScheduler, streams: Sequence[tuple[OnlineScorer, list[np.ndarray]]],
                 pause_s: Sequence[float]) -> list[list[tuple[np.ndarray, float, tuple[float, ...]]]]:
    """Each stream on its own thread hands its frames over one by one (pausing ``pause_s`` between them)."""
    out: list[list[tuple[np.ndarray, float, tuple[float, ...]]]] = [[] for _ in streams]

    def run(k: int) -> None:
        scorer, frames = streams[k]
        scheduler.attach()
        try:
            for i, frame in enumerate(frames):
                feature, score = scheduler.score(SnippetRequest(scorer, frame, None, i, i * 0.64, (i + 1) * 0.64))
                out[k].append((feature, score.score, score.class_probs))
                time.sleep(pause_s[k])
        finally:
            scheduler.detach()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(streams))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return out


@pytest.mark.parametrize("hold", [0, 4])
def test_each_stream_gets_what_it_would_get_scored_alone(engine: StreamEngine, hold: int) -> None:
    # streams of different frame sizes and window lengths, several frames each, batched together
    sizes = [(64, 48), (96, 54), (64, 48), (40, 40), (128, 72)]
    streams = [(OnlineScorer(engine, window=w, hold=hold), _frames(k, 9, size))
               for k, (size, w) in enumerate(zip(sizes, (8, 3, 16, 5, 8), strict=True))]
    scheduler = BatchScheduler(engine, max_batch=4, wait_s=0.05)
    batched = _run_streams(scheduler, streams, [0.0] * len(streams))
    assert scheduler.stats.largest > 1  # batches did form
    for k, (scorer, frames) in enumerate(streams):
        alone = OnlineScorer(engine, window=scorer.window, hold=hold)
        for i, frame in enumerate(frames):
            feature = engine.encode(frame[None])[0]
            expected = alone.push(feature, i, i * 0.64, (i + 1) * 0.64)
            got_feature, got_score, got_probs = batched[k][i]
            np.testing.assert_allclose(got_feature, feature, atol=1e-5, rtol=0)
            assert got_score == pytest.approx(expected.score, abs=1e-5)
            assert got_probs == pytest.approx(expected.class_probs, abs=1e-5)


def test_a_fast_stream_does_not_starve_slow_ones(engine: StreamEngine) -> None:
    # one stream with a frame always ready, five that pause between frames, batches of two: oldest first means
    # no snippet waits more than ceil(6 / 2) = 3 forwards, and every slow stream is served all along
    streams = [(OnlineScorer(engine, window=8), _frames(k, 40 if k == 0 else 8, (32, 32))) for k in range(6)]
    scheduler = BatchScheduler(engine, max_batch=2, wait_s=0.0)
    out = _run_streams(scheduler, streams, [0.0] + [0.01] * 5)
    assert [len(o) for o in out] == [40, 8, 8, 8, 8, 8]
    assert scheduler.stats.most_batches_waited <= 3
    assert scheduler.stats.snippets == 80 and scheduler.stats.largest == 2


def test_a_model_error_fails_the_streams_of_its_batch_and_the_scheduler_goes_on(engine: StreamEngine) -> None:
    scheduler = BatchScheduler(engine, max_batch=4, wait_s=0.0)
    scheduler.attach()
    scorer = OnlineScorer(engine, window=4)
    with pytest.raises(ValueError, match="features"):
        scheduler.score(SnippetRequest(scorer, None, np.zeros(7, np.float32), 0, 0.0, 0.64))
    frame = _frames(0, 1, (32, 32))[0]
    feature, score = scheduler.score(SnippetRequest(OnlineScorer(engine, window=4), frame, None, 0, 0.0, 0.64))
    assert feature.shape == (engine.config.visual_width,) and 0.0 <= score.score <= 1.0
    scheduler.detach()
