"""OnlineScorer and StreamRunner on a tiny random bundle: the online score of snippet i is DSANet's (official test
procedure) on the window ending at i followed by the hold; a file through the runner (no hold) gives the offline
score for its last snippet."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from model.bundle import Bundle
from tests.conftest import tiny_bundle
from tests.support.stream_sink import RecordingSink
from workers.analyzer import Analyzer
from workers.exceptions import ConfigurationError
from workers.settings import WorkerSettings
from workers.stream import OnlineScorer, StreamEngine, StreamRunner
from workers.synthetic import Event, make_video

SETTINGS = WorkerSettings(device="cpu", clip_precision="fp32", threshold=0.0, stream_hysteresis=0.0, stream_hold=0)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return tiny_bundle("ucf", seed=3)


@pytest.fixture(scope="module")
def engine(bundle: Bundle) -> StreamEngine:
    return StreamEngine(bundle, SETTINGS)


@pytest.mark.parametrize("hold", [0, 3])
def test_each_score_is_the_newest_row_of_the_official_procedure_on_its_window(engine: StreamEngine, hold: int
                                                                              ) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(20, engine.config.visual_width)).astype(np.float32)
    scorer = OnlineScorer(engine, window=16, hold=hold)
    online = [scorer.push(f, i, i * 0.64, (i + 1) * 0.64) for i, f in enumerate(feats)]
    for i in (0, 5, 15, 16, 19):
        lo = max(0, i - 15)
        expected = engine.predictor.score(np.concatenate([feats[lo: i + 1], np.repeat(feats[i:i + 1], hold, 0)]))
        assert online[i].score == pytest.approx(float(expected.anomaly[i - lo]), abs=1e-6)
        assert online[i].class_probs == pytest.approx(expected.class_probs[i - lo].tolist(), abs=1e-6)
        assert online[i].context == min(i + 1, 16)
    assert len(scorer) == 16 and sum(online[7].class_probs) == pytest.approx(1.0, abs=1e-5)


def test_memory_is_the_window_whatever_the_stream_length(engine: StreamEngine) -> None:
    scorer = OnlineScorer(engine, window=8)
    row = np.zeros(engine.config.visual_width, np.float32)
    for i in range(30):
        scorer.push(row, i, i, i + 1)
    assert len(scorer) == 8
    scorer.reset()
    assert len(scorer) == 0


def test_a_window_longer_than_the_model_allows_is_refused(engine: StreamEngine) -> None:
    OnlineScorer(engine, window=253, hold=3)
    with pytest.raises(ConfigurationError, match="visual_length \\(256 snippets\\)"):
        OnlineScorer(engine, window=254, hold=3)
    with pytest.raises(ConfigurationError, match="window 0"):
        OnlineScorer(engine, window=0, hold=0)


def test_a_file_through_the_runner_ends_with_the_offline_score_of_its_last_snippet(bundle: Bundle, tmp_path: Path
                                                                                   ) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=16 * 10, fps=25.0, size=(64, 48),
                       events=[Event("flash", 2.0, 4.0)]).path
    analyzer = Analyzer(bundle, SETTINGS)
    offline = analyzer.analyze(video)
    sink = RecordingSink()
    engine = StreamEngine.from_analyzer(analyzer)
    final = StreamRunner(video, engine, sink).run(threading.Event())
    assert final.state == "stopped" and final.reason == "end of file"
    assert final.snippets_scored == 10 and final.snippets_dropped == 0 and (final.width, final.height) == (64, 48)
    scores = [r.item for r in sink.scores]
    assert [s.index for s in scores] == list(range(10))
    assert [s.start_s for s in scores] == pytest.approx(offline.timeline.start_s)
    # the last snippet sees the whole video in both cases (10 snippets < W = 256): the same number
    assert scores[-1].score == pytest.approx(offline.timeline.score[-1], abs=1e-5)
    assert sink.states() == ["connecting", "live", "stopped"]
    # threshold 0: one event over the whole file, closed when the file ends
    assert [(r.item.kind, r.item.reason) for r in sink.events] == [("open", None), ("close", "end of file")]
    assert sink.events[1].item.event.end_s == pytest.approx(offline.timeline.end_s[-1])


def test_a_still_scene_reuses_its_feature_and_scores_as_if_encoded(bundle: Bundle, tmp_path: Path) -> None:
    # 6 s at 25 fps (9 snippets), the scene still for the first 4 s: its snippets after the first reuse its feature
    video = make_video(tmp_path / "still.mp4", duration_s=6.0, fps=25.0, size=(96, 72), still=[(0.0, 4.0)]).path
    runs = {}
    for skip in (0.0, 8.0):
        settings = SETTINGS.model_copy(update={"stream_skip_unchanged": skip})
        engine = StreamEngine(bundle, settings)
        sink = RecordingSink()
        runner = StreamRunner(video, engine, sink)
        runner.run(threading.Event())
        runs[skip] = (runner.gate, [r.item.score for r in sink.scores])
    gate, scores = runs[8.0]
    assert (gate.encoded, gate.reused) == (9 - 5, 5)  # snippets 1-5 start within the still 4 s
    assert runs[0.0][0].reused == 0 and len(scores) == len(runs[0.0][1]) == 9
    assert scores == pytest.approx(runs[0.0][1], abs=1e-3)
