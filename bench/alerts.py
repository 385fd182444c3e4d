"""Benchmark of false alarms on new cameras: the demo model on synthetic scenes it was never trained on, by step.

Each camera is a :class:`~workers.synthetic.SceneRenderer` layout the demo model never saw (its own seeds) plus
nuisances (lighting ramps, a day/night switch to a grey night picture, sensor noise, camera shake, rain streaks,
moving foliage, a blinking sign) and one **benign look-alike**: something normal for that camera but anomalous in
general (a shop sign strobing magenta in a third of the frame every 150 s, a blue van parking in the frame, …).
Its footage is a normal **calibration stretch** followed by a **test stretch** in which anomalies of the demo
model's classes (``flash``, ``color_shift``) are injected at known times.

How the footage reaches the model: a live stream keeps one frame per 16-frame snippet (the middle one,
``VAD_FRAME_PICK``) and embeds it (:class:`workers.stream.StreamRunner`); here exactly those frames are rendered in
memory at the demo's 96x72, embedded in batches by the stream engine's encoder, and scored one snippet at a time by
:class:`workers.stream.OnlineScorer` (the service's online scorer, with the workers' window and hold as the runner
sizes them to the model: 124 snippets plus a hold of 4 for the demo model), then
turned into alarms by :class:`workers.stream.EventTracker`. What this skips: encoding and decoding the video (no
codec artefacts) and real-time pacing (no dropped snippets). The offline scores are the same features scored the
way ``vad analyze`` does (:class:`model.inference.DSANetPredictor`: chunks of the model's sequence length, 128
snippets for the demo model).

Per camera and step it reports:

* **FA/h**: alarms that open outside every injected anomaly (± 1 s), per hour of normal test footage;
* **recall**: injected anomalies for which an alarm *opens* within 1 s of the onset (media time);
* **AUC**: frame AUC of the online scores on the test stretch (frame ``f`` gets its snippet's score);
* **LaAP** of the online scores beside the offline **AP** (see :func:`latency_aware_ap`).

Steps: ``out of the box`` (the deployment's threshold, 0.5); ``calibrated`` (:func:`vad.alerts.calibrate` on the
calibration stretch, target ``--target`` alarms per hour); ``5 verdicts`` (the test stretch replayed with the
calibrated threshold, an operator's verdict on each of the first 5 alarms as it closes, true or false by the
injected truth, applied at once by :func:`vad.alerts.threshold_after_false_alarm`); ``20 verdicts + adaptation``
(:func:`adaptation_step`: verdicts by the truth on the first 20 alarms of a **review stretch**, the test stretch's
hours on another day with other anomaly times and other noise, raised by the model and threshold of the step
before; ``vad adapt``'s fine-tuning (:mod:`workers.adaptation`) on them and the normal windows a stream would have
saved, its held-out rule and the shadow's tally over the calibration stretch; then calibration again with the
adapted model, measured on the test stretch like every other step). ``--no-adapt`` leaves that step out.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/alerts.py            # the full form: 10 + 60 minutes per camera
    HF_HUB_OFFLINE=1 .venv/bin/python bench/alerts.py --small    # minutes of footage (the test suite's form)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from model.benchmark.metrics import frame_metrics
from model.benchmark.protocol import SNIPPET_FRAMES
from vad.alerts import Calibration, calibrate, threshold_after_false_alarm
from workers.demo.recipe import DemoRecipe
from workers.settings import WorkerSettings
from workers.stream import StreamEngine
from workers.stream.event_tracker import EventTracker
from workers.stream.online import OnlineScorer, SnippetScore
from workers.synthetic import Event, SceneRenderer

FPS = DemoRecipe().fps  # the demo model's frame rate: 0.16 s snippets at 100 fps
SIZE = DemoRecipe().size
PICK = 8  # the middle frame of a snippet (VAD_FRAME_PICK=middle)
TOLERANCE_S = 1.0
VERDICTS = 5


# --- cameras ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LookAlike:
    """A benign look-alike: ``kind`` shown in ``region`` (x0, x1 as fractions of the width) for ``length_s`` every
    ``period_s`` (first at ``offset_s``)."""

    kind: str  # strobe (magenta, 2 frames on 2 off), blue (a blue body), white (a white flash)
    region: tuple[float, float]
    period_s: float
    length_s: float
    offset_s: float = 60.0

    def covers(self, t: float) -> bool:
        return t >= self.offset_s and (t - self.offset_s) % self.period_s < self.length_s


@dataclass(frozen=True)
class Camera:
    """A new camera: a scene layout (``seed``), its nuisances and its benign look-alike."""

    name: str
    seed: int
    look_alike: LookAlike
    noise: float = 3.0
    ramp: float = 0.0  # amplitude of a slow lighting ramp (gain 1 ± ramp over a 40-minute period)
    night: tuple[float, float] | None = None  # times of a grey, dark night picture
    shake: int = 0  # pixels of camera shake
    rain: bool = False
    foliage: bool = False
    blink: bool = False  # a small sign blinking at 1 Hz

    def describe(self) -> str:
        parts = [f"noise {self.noise:g}"]
        parts += [f"lighting ramp ±{self.ramp:.0%}"] if self.ramp else []
        parts += [f"night {self.night[0] / 60:g}-{self.night[1] / 60:g} min"] if self.night else []
        parts += [f"shake ±{self.shake} px"] if self.shake else []
        parts += ["rain"] if self.rain else []
        parts += ["foliage"] if self.foliage else []
        parts += ["blinking sign"] if self.blink else []
        la = self.look_alike
        parts.append(f"look-alike: {la.kind} in x {la.region[0]:.0%}-{la.region[1]:.0%} for {la.length_s:g} s "
                     f"every {la.period_s:g} s")
        return ", ".join(parts)


CAMERAS = (
    Camera("shopfront", 9101, LookAlike("strobe", (2 / 3, 1.0), 150.0, 3.0), noise=4.0, night=(300.0, 2700.0)),
    Camera("depot", 9202, LookAlike("blue", (0.0, 0.4), 240.0, 8.0, 100.0), ramp=0.3, shake=2),
    Camera("park", 9303, LookAlike("white", (0.0, 1.0), 200.0, 0.6, 130.0), rain=True, foliage=True, blink=True),
    Camera("lobby", 9404, LookAlike("blue", (1 / 3, 2 / 3), 120.0, 6.0, 45.0), ramp=0.2, noise=5.0, blink=True),
)


class CameraRenderer:
    """Frames of one camera: the scene (with the injected anomalies) and its nuisances, deterministic."""

    def __init__(self, camera: Camera, events: Sequence[Event]) -> None:
        self.camera = camera
        self.scene = SceneRenderer(*SIZE, seed=camera.seed, events=events, noise=0)
        self._rng_seed = camera.seed

    def render(self, index: int, t: float) -> np.ndarray:
        cam, (w, h) = self.camera, SIZE
        frame = self.scene.render(index, t).astype(np.float32)
        rng = np.random.default_rng((self._rng_seed, index))
        if cam.foliage:  # a bush in the lower left, swaying
            sway = int(4 * np.sin(2 * np.pi * t / 3.0))
            yy, xx = np.mgrid[0:h, 0:w]
            mask = (xx - (w // 5 + sway)) ** 2 / (w // 5) ** 2 + (yy - h) ** 2 / (h // 2) ** 2 < 1
            frame[mask] = frame[mask] * 0.3 + np.array([30, 110, 40], np.float32)
        if cam.blink and int(t * 2) % 2 == 0:
            frame[4:10, w - 14 : w - 4] = (255, 40, 40)
        la = cam.look_alike
        if la.covers(t):
            x0, x1 = int(la.region[0] * w), int(la.region[1] * w)
            part = frame[:, x0:x1]
            if la.kind == "strobe" and index % 4 < 2:
                frame[:, x0:x1] = part / 4 + np.array([190, 20, 190], np.float32)
            elif la.kind == "blue":
                frame[h // 6 :, x0:x1] = part[h // 6 :] * 0.2 + np.array([20, 40, 170], np.float32)
            elif la.kind == "white":
                frame[:, x0:x1] = part * 0.3 + 180
        if cam.ramp:
            frame *= 1.0 + cam.ramp * np.sin(2 * np.pi * t / 2400.0)
        if cam.night is not None and cam.night[0] <= t < cam.night[1]:
            grey = frame.mean(axis=2, keepdims=True)
            frame = np.repeat(grey * 0.45 + 15, 3, axis=2)
        if cam.rain:
            for _ in range(12):
                x, y = int(rng.integers(0, w)), int(rng.integers(0, h - 8))
                for k in range(8):
                    frame[y + k, min(w - 1, x + k // 3)] += 70
        if cam.noise:
            frame += rng.normal(0.0, cam.noise, frame.shape).astype(np.float32)
        if cam.shake:
            frame = np.roll(frame, (int(rng.integers(-cam.shake, cam.shake + 1)),
                                    int(rng.integers(-cam.shake, cam.shake + 1))), axis=(0, 1))
        return np.clip(frame, 0, 255).astype(np.uint8)


def plan_anomalies(start_s: float, end_s: float, every_s: float, seed: int) -> list[Event]:
    """One anomaly of 2-4 s per ``every_s`` slot of the test stretch, at a random place in its slot, the classes
    alternating."""
    rng = np.random.default_rng(seed)
    events, slot = [], start_s
    classes = ("flash", "color_shift")
    while slot + every_s <= end_s:
        length = float(rng.uniform(2.0, 4.0))
        at = slot + 5.0 + float(rng.uniform(0.0, every_s - length - 10.0))
        events.append(Event(classes[len(events) % 2], round(at, 2), round(at + length, 2)))
        slot += every_s
    return events


# --- scoring through the online path ----------------------------------------------------------------------------


@dataclass
class Footage:
    """One camera's scored footage: online and offline scores of every snippet, and the truth."""

    camera: Camera
    calibration_s: float
    test_s: float
    events: list[Event]
    starts: np.ndarray
    ends: np.ndarray
    online: list[SnippetScore]
    offline: np.ndarray
    features: np.ndarray = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def snippet_s(self) -> float:
        return SNIPPET_FRAMES / FPS

    def test_slice(self) -> slice:
        return slice(round(self.calibration_s / self.snippet_s), len(self.online))


def score_camera(camera: Camera, engine: StreamEngine, calibration_s: float, test_s: float, every_s: float,
                 batch: int = 256, cache: Path | None = None) -> Footage:
    """Render, embed and score one camera's footage through the online scorer (and offline, for the AP); with
    ``cache``, the scores are kept there and read back by a later run of the same camera and form."""
    events = plan_anomalies(calibration_s, calibration_s + test_s, every_s, camera.seed)
    kept = None if cache is None else cache / f"{camera.name}-{calibration_s:g}-{test_s:g}.npz"
    if kept is not None and kept.is_file():
        data = np.load(kept)
        n = len(data["score"])
        online = [SnippetScore(index=k, start_s=float(data["starts"][k]), end_s=float(data["ends"][k]),
                               score=float(data["score"][k]), class_probs=tuple(map(float, data["probs"][k])),
                               scored_at=float(data["ends"][k])) for k in range(n)]
        return Footage(camera, calibration_s, test_s, events, data["starts"], data["ends"], online, data["offline"],
                       data["features"], {"cached": 1.0})
    footage = _score(camera, engine, calibration_s, test_s, events, batch)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez(kept, score=np.array([s.score for s in footage.online]), starts=footage.starts, ends=footage.ends,
                 probs=np.array([s.class_probs for s in footage.online]), offline=footage.offline,
                 features=footage.features)
    return footage


def _score(camera: Camera, engine: StreamEngine, calibration_s: float, test_s: float, events: list[Event],
           batch: int) -> Footage:
    renderer = CameraRenderer(camera, events)
    snippet_s = SNIPPET_FRAMES / FPS
    n = round((calibration_s + test_s) / snippet_s)
    t0 = time.perf_counter()
    features = []
    for first in range(0, n, batch):
        frames = [renderer.render(k * SNIPPET_FRAMES + PICK, (k * SNIPPET_FRAMES + PICK) / FPS)
                  for k in range(first, min(n, first + batch))]
        features.append(engine.encode(np.stack(frames)))
    feats = np.concatenate(features)
    t1 = time.perf_counter()
    settings = engine.settings
    hold = min(settings.stream_hold, engine.visual_length - 1)
    window = min(settings.stream_window, engine.visual_length - hold)
    starts, ends = np.arange(n) * snippet_s, (np.arange(n) + 1) * snippet_s
    online = online_scores(engine, feats, window, hold, starts, ends)
    t2 = time.perf_counter()
    offline = engine.predictor.score(feats).anomaly.astype(np.float64)
    t3 = time.perf_counter()
    return Footage(camera, calibration_s, test_s, events, starts, ends, online, offline, feats,
                   {"render_embed": t1 - t0, "online": t2 - t1, "offline": t3 - t2})


def online_scores(engine: StreamEngine, feats: np.ndarray, window: int, hold: int, starts: np.ndarray,
                  ends: np.ndarray, batch: int = 64, head: Any = None) -> list[SnippetScore]:
    """What :class:`OnlineScorer` gives snippet by snippet, computed ``batch`` windows per forward.

    ``OnlineScorer.push`` runs one forward per snippet: on this machine's CPU that is 20x slower per snippet than
    the same windows in one batch, and an hour of footage would take hours. The windows are the scorer's (the
    last ``window`` features, then ``hold`` copies of the newest) and go through the same
    :meth:`StreamEngine.score_windows`; :func:`check_replay` asserts that the two agree before every run.
    """
    out: list[SnippetScore] = []
    for first in range(0, len(feats), batch):
        ks = range(first, min(len(feats), first + batch))
        windows = [np.concatenate([feats[max(0, k - window + 1) : k + 1], np.repeat(feats[k : k + 1], hold, 0)])
                   for k in ks]
        for k, scored in zip(ks, engine.score_windows(windows, head), strict=True):
            row = min(k, window - 1)
            out.append(SnippetScore(index=k, start_s=float(starts[k]), end_s=float(ends[k]),
                                    score=float(scored.anomaly[row]),
                                    class_probs=tuple(float(p) for p in scored.class_probs[row]),
                                    scored_at=float(ends[k]), context=row + 1))
    return out


def check_replay(engine: StreamEngine, feats: np.ndarray, window: int = 6, hold: int = 3, count: int = 10) -> float:
    """The largest difference between :func:`online_scores` and :class:`OnlineScorer` pushing snippet by snippet
    (a short window, so that full and partial windows are both checked); raises past 1e-4."""
    scorer = OnlineScorer(engine, window, hold)
    t = np.arange(count + 1) * SNIPPET_FRAMES / FPS
    pushed = [scorer.push(feats[k], k, float(t[k]), float(t[k + 1])).score for k in range(count)]
    replayed = [s.score for s in online_scores(engine, feats[:count], window, hold, t[:-1], t[1:], batch=4)]
    worst = float(np.max(np.abs(np.array(pushed) - np.array(replayed))))
    if worst > 1e-4:
        raise AssertionError(f"the batched replay differs from OnlineScorer by {worst}")
    return worst


# --- metrics -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    start_s: float
    end_s: float
    opened_s: float  # media time at which it opened (the end of the snippet that opened it)
    peak: float


def frame_truth(events: Sequence[Event], first_frame: int, frames: int) -> np.ndarray:
    t = (first_frame + np.arange(frames)) / FPS
    truth = np.zeros(frames, np.int8)
    for e in events:
        truth[(t >= e.start_s) & (t < e.end_s)] = 1
    return truth


def latency_aware_ap(scores: np.ndarray, truth: np.ndarray, levels: int = 200) -> float:
    """Latency-aware AP of frame scores: our own formula for the LaAP of arXiv 2505.19022, whose exact definition
    could not be read here (see docs/alerts.md), so values are not comparable with the paper's.

    At each threshold ``u``, the precision is the usual frame precision of ``score > u``; an anomaly of ``L``
    frames whose first frame above ``u`` comes ``d`` frames after its onset is credited ``L - d`` recalled frames
    (a late detection loses the frames before it, a linear decay in the delay; an anomaly never crossed counts
    nothing; the frames after the first crossing count even where they score below ``u``). The recall is the
    credited frames over all anomalous frames, and the LaAP is the step sum ``sum (R_k - R_{k-1}) P_k`` over
    ``levels`` thresholds at score quantiles, highest first. A detector that scores every anomaly above ``u``
    from its first frame to its last gets the plain frame AP; one crossing ``d`` frames late gets less.

    Args:
        scores: One score per frame.
        truth: 0/1 per frame (:func:`frame_truth`).
        levels: Quantiles of ``scores`` tried as thresholds.

    Returns:
        The LaAP in [0, 1]; NaN when ``truth`` lacks anomalous or normal frames.
    """
    scores = np.asarray(scores, np.float64)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], truth, [0]])))
    spans = list(zip(edges[::2], edges[1::2], strict=True))
    positives = int(truth.sum())
    if not positives or positives == len(truth):
        return float("nan")
    thresholds = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, levels)))[::-1]
    ap, last_recall = 0.0, 0.0
    for u in thresholds:
        above = scores > u
        predicted = int(above.sum())
        recalled = 0
        for a, b in spans:
            hits = np.flatnonzero(above[a:b])
            recalled += (b - a - hits[0]) if hits.size else 0
        if not predicted:
            continue
        precision = float((above & (truth == 1)).sum()) / predicted
        recall = recalled / positives
        ap += (recall - last_recall) * precision
        last_recall = recall
    return ap


def alarms_of(scores: Sequence[SnippetScore], classes: Sequence[str], threshold: float, min_event_s: float,
              merge_gap_s: float, on_close: Callable[[Alarm], float | None] | None = None) -> list[Alarm]:
    """Replay ``scores`` through the stream's event tracker; ``on_close`` may return a new threshold (a verdict)."""
    tracker = EventTracker(threshold=threshold, hysteresis=0.0, min_event_s=min_event_s, merge_gap_s=merge_gap_s,
                           class_names=classes)
    alarms, opened = [], {}
    for s in scores:
        for update in tracker.update(s):
            if update.kind == "open":
                opened[update.event.id] = s.end_s
                continue
            e = update.event
            alarm = Alarm(e.start_s, e.end_s or s.end_s, opened.pop(e.id), e.peak_score)
            alarms.append(alarm)
            if on_close is not None and (level := on_close(alarm)) is not None:
                tracker.retune(level, tracker.min_event_s)
    for update in tracker.finish():
        e = update.event
        alarms.append(Alarm(e.start_s, e.end_s or e.start_s, opened.pop(e.id), e.peak_score))
    return alarms


def matches(alarm: Alarm, event: Event) -> bool:
    """Whether the alarm went off (opened) during the anomaly, or within the tolerance around it: an alarm that
    opens in normal footage is a false alarm even if it lasts into an anomaly (the operator was called for
    nothing)."""
    return event.start_s - TOLERANCE_S <= alarm.opened_s <= event.end_s + TOLERANCE_S


def step_metrics(footage: Footage, alarms: Sequence[Alarm]) -> dict[str, Any]:
    test = footage.test_slice()
    start = float(footage.starts[test.start])
    alarms = [a for a in alarms if a.end_s > start]
    false = [a for a in alarms if not any(matches(a, e) for e in footage.events)]
    normal_h = (footage.test_s - sum(e.end_s - e.start_s for e in footage.events)) / 3600.0
    hit = [e for e in footage.events if any(abs(a.opened_s - e.start_s) <= TOLERANCE_S for a in alarms)]
    return {"false_alarms": len(false), "fa_per_hour": len(false) / normal_h,
            "recall": len(hit) / len(footage.events) if footage.events else float("nan"),
            "alarms": len(alarms)}


def score_metrics(footage: Footage) -> dict[str, float]:
    test = footage.test_slice()
    online = np.array([s.score for s in footage.online[test]])
    truth = frame_truth(footage.events, test.start * SNIPPET_FRAMES, len(online) * SNIPPET_FRAMES)
    on = frame_metrics([online], truth)
    off = frame_metrics([footage.offline[test]], truth)
    return {"auc": on.auc, "laap": latency_aware_ap(np.repeat(online, SNIPPET_FRAMES), truth),
            "offline_auc": off.auc, "offline_ap": off.ap}


# --- steps ---------------------------------------------------------------------------------------------------


def run_steps(footage: Footage, classes: Sequence[str], settings: WorkerSettings, target: float
              ) -> list[dict[str, Any]]:
    """The camera's rows: out of the box, calibrated, after verdicts."""
    test = footage.test_slice()
    scores = footage.online[test]
    gap, default_min = settings.stream_merge_gap_s, settings.stream_min_event_s
    rows = []
    base = alarms_of(scores, classes, settings.threshold, default_min, gap)
    rows.append({"step": "out of the box", "threshold": settings.threshold, "min_event_s": default_min,
                 **step_metrics(footage, base)})
    normal = footage.online[: test.start]
    cal = best_calibration([s.score for s in normal], footage.starts[: test.start].tolist(),
                           footage.ends[: test.start].tolist(), target, gap, settings.threshold)
    calibrated = alarms_of(scores, classes, cal.threshold, cal.min_event_s, gap)
    rows.append({"step": f"calibrated ({footage.calibration_s / 60:g} min)", "threshold": cal.threshold,
                 "min_event_s": cal.min_event_s, **step_metrics(footage, calibrated), "calibration": cal.to_dict()})
    rows.append(verdict_step(footage, classes, cal, gap))
    rows.append(verdict_step(footage, classes, cal, gap, false_only=True))
    return rows


def best_calibration(scores: list[float], starts: list[float], ends: list[float], target: float, gap: float,
                     floor: float) -> Calibration:
    """The calibration over minimum event lengths of 0-2 snippets: the one with the lowest threshold (the most
    sensitive that meets the target), the shortest on a tie."""
    snippet_s = SNIPPET_FRAMES / FPS
    options = [calibrate(scores, starts, ends, target_per_hour=target, min_event_s=k * snippet_s, merge_gap_s=gap,
                         floor=floor) for k in range(3)]
    return min(options, key=lambda c: (c.threshold, c.min_event_s))


def verdict_step(footage: Footage, classes: Sequence[str], cal: Calibration, gap: float, false_only: bool = False
                 ) -> dict[str, Any]:
    """The test stretch replayed from the calibrated threshold; alarms get a verdict as they close, applied at once
    (the verdict rule): the first ``VERDICTS`` alarms, or (``false_only``) every alarm until ``VERDICTS`` false
    alarms have had one (an operator who reviews each alarm until five complaints; the true alerts confirmed on the
    way cap the rule)."""
    state: dict[str, Any] = {"threshold": cal.threshold, "verdicts": [], "true_peaks": []}

    def review(alarm: Alarm) -> float | None:
        if state["verdicts"].count("false_alarm" if false_only else "true_alert") + (
                0 if false_only else state["verdicts"].count("false_alarm")) >= VERDICTS:
            return None
        true = any(matches(alarm, e) for e in footage.events)
        state["verdicts"].append("true_alert" if true else "false_alarm")
        if true:
            state["true_peaks"].append(alarm.peak)
            return None
        state["threshold"] = threshold_after_false_alarm(state["threshold"], alarm.peak, state["true_peaks"])
        return state["threshold"]

    alarms = alarms_of(footage.online[footage.test_slice()], classes, cal.threshold, cal.min_event_s, gap, review)
    name = f"{VERDICTS} false-alarm verdicts" if false_only else f"{VERDICTS} verdicts"
    return {"step": name, "threshold": state["threshold"], "min_event_s": cal.min_event_s,
            **step_metrics(footage, alarms), "verdicts": state["verdicts"]}


# --- 20 verdicts and adaptation (vad adapt) -----------------------------------------------------------------------

REVIEW_VERDICTS = 20
DAY_FRAMES = 24 * 3600 * int(FPS)
NORMAL_WINDOW_EVERY_S = 300.0  # VAD_STREAM_NORMAL_WINDOW_EVERY_S
NORMAL_WINDOW_SNIPPETS = 64
CONTEXT_SNIPPETS = 32  # a closing event's saved window starts this many snippets before it (FeatureRing)


def review_stretch(footage: Footage, engine: StreamEngine, review_s: float, every_s: float
                   ) -> tuple[np.ndarray, np.ndarray, list[Event]]:
    """The footage the verdicts are given on: ``review_s`` from the test stretch's start, on another day (a day's
    frames later: other noise, shake and rain; other anomaly times), embedded like the rest. Nothing of it is in
    the test stretch the step is measured on. Its features and snippet start times, and its anomalies."""
    cam, first = footage.camera, footage.test_slice().start
    start_s = float(footage.starts[first])
    events = plan_anomalies(start_s, start_s + review_s, every_s, cam.seed + 1)
    renderer = CameraRenderer(cam, events)
    ks, feats = np.arange(first, first + round(review_s / footage.snippet_s)), []
    for i in range(0, len(ks), 256):
        frames = [renderer.render(DAY_FRAMES + int(k) * SNIPPET_FRAMES + PICK, (int(k) * SNIPPET_FRAMES + PICK) / FPS)
                  for k in ks[i:i + 256]]
        feats.append(engine.encode(np.stack(frames)))
    return np.concatenate(feats), ks * footage.snippet_s, events


def snippet_of(t: float, first: int, snippet_s: float) -> int:
    return int(t / snippet_s + 1e-6) - first


def adaptation_samples(footage: Footage, review: np.ndarray, review_events: Sequence[Event],
                       alarms: Sequence[Alarm], classes: Sequence[str], labels: dict[str, str],
                       normal_every_s: float = NORMAL_WINDOW_EVERY_S) -> list[Any]:
    """What a stream saves and an operator gives: the first 20 review alarms' windows with a verdict by the truth
    (true alerts with the truth's class), and normal windows every ``normal_every_s`` of stream time over which no
    alarm was open (the calibration stretch and the review stretch)."""
    from workers.adaptation import Sample

    test, snippet_s = footage.test_slice(), footage.snippet_s
    samples = []
    for i, alarm in enumerate(alarms[:REVIEW_VERDICTS]):
        first = snippet_of(alarm.start_s, test.start, snippet_s)
        last = max(first, snippet_of(alarm.end_s, test.start, snippet_s) - 1)
        lo, hi = max(0, first - CONTEXT_SNIPPETS), min(len(review), last + 2)
        truth = next((e for e in review_events if matches(alarm, e)), None)
        if truth is not None:
            samples.append(Sample(f"alarm{i}", "true_alert", review[lo:hi], labels[truth.class_name],
                                  (first - lo, last - lo)))
        else:
            samples.append(Sample(f"alarm{i}", "false_alarm", review[lo:hi], labels[classes[0]]))
    quiet_cal = footage.features[: test.start]
    stretches = ((quiet_cal, 0.0, ()), (review, float(footage.starts[test.start]), alarms))
    for feats, origin, busy in stretches:
        for end_s in np.arange(normal_every_s, len(feats) * snippet_s + 1e-6, normal_every_s):
            hi = round(float(end_s) / snippet_s)
            lo = hi - NORMAL_WINDOW_SNIPPETS
            t0, t1 = origin + lo * snippet_s, origin + hi * snippet_s
            if lo >= 0 and not any(a.start_s < t1 and a.end_s > t0 for a in busy):
                samples.append(Sample(f"normal{len(samples)}", "normal", feats[lo:hi], labels[classes[0]]))
    return samples


def adaptation_step(footage: Footage, engine: StreamEngine, settings: WorkerSettings, before: dict[str, Any],
                    target: float, small: bool) -> dict[str, Any]:
    """Verdicts on the review stretch's first 20 alarms (of the model and threshold in force after the previous
    step), ``vad adapt``'s fine-tuning and rule on them and the saved normal windows, then calibration again on the
    calibration stretch with the adapted model, measured on the test stretch like the other steps."""
    from vad.bundles import offline_rule
    from workers.adaptation import fine_tune, split

    classes, gap = engine.class_names, settings.stream_merge_gap_s
    test = footage.test_slice()
    started = time.perf_counter()
    review_s, every_s, normal_every_s = (300.0, 30.0, 40.0) if small else (3600.0, 150.0, NORMAL_WINDOW_EVERY_S)
    review, starts, review_events = review_stretch(footage, engine, review_s, every_s)
    hold = min(settings.stream_hold, engine.visual_length - 1)
    window = min(settings.stream_window, engine.visual_length - hold)
    parent_review = online_scores(engine, review, window, hold, starts, starts + footage.snippet_s)
    alarms = alarms_of(parent_review, classes, before["threshold"], before["min_event_s"], gap)
    labels = {spec.name: spec.label for spec in engine.config.classes}
    samples = adaptation_samples(footage, review, review_events, alarms, classes, labels, normal_every_s)
    given = [s.kind for s in samples if s.kind != "normal"]
    row: dict[str, Any] = {"step": f"{len(given)} verdicts + adaptation", "threshold": before["threshold"],
                           "min_event_s": before["min_event_s"]}
    info: dict[str, Any] = {"true_alerts": given.count("true_alert"), "false_alarms": given.count("false_alarm"),
                            "normal_windows": len(samples) - len(given), "review_anomalies": len(review_events)}
    base = engine.predictor.bundle
    train, held = split(samples, settings.adapt_holdout)
    try:
        adapted = fine_tune(base, base, train, held, epochs=settings.adapt_epochs, lr=settings.adapt_lr)
    except ValueError as exc:  # DataError: too few verdicts of a kind
        info["outcome"] = f"not adapted: {exc}"
        return {**row, **before_metrics(before), "adaptation": info}
    ok, why = offline_rule(adapted.metrics)
    info.update(rule=why, metrics=adapted.metrics.model_dump(), training=adapted.training)
    head = engine.head(adapted.bundle)
    cand = online_scores(engine, footage.features, window, hold, footage.starts, footage.ends, head=head)
    cal_scores = cand[: test.start]
    # the shadow's tally over the calibration stretch, at the parent's calibrated threshold
    parent_cal = alarms_of(footage.online[: test.start], classes, before["threshold"], before["min_event_s"], gap)
    shadow_cal = alarms_of(cal_scores, classes, before["threshold"], before["min_event_s"], gap)
    info["shadow"] = {"snippets": test.start, "shadow_events": len(shadow_cal), "live_events": len(parent_cal)}
    if not ok or len(shadow_cal) > len(parent_cal):
        info["outcome"] = "rejected: " + (why if not ok else "the shadow raised more events than the active model")
        return {**row, **before_metrics(before), "adaptation": info}
    cal = best_calibration([s.score for s in cal_scores], footage.starts[: test.start].tolist(),
                           footage.ends[: test.start].tolist(), target, gap, settings.threshold)
    alarms_after = alarms_of(cand[test], classes, cal.threshold, cal.min_event_s, gap)
    online = np.array([s.score for s in cand[test]])
    truth = frame_truth(footage.events, test.start * SNIPPET_FRAMES, len(online) * SNIPPET_FRAMES)
    offline = offline_scores(adapted.bundle, footage.features[test])
    info["outcome"] = "promoted"
    info["seconds"] = round(time.perf_counter() - started, 1)
    return {**row, "threshold": cal.threshold, "min_event_s": cal.min_event_s, **step_metrics(footage, alarms_after),
            "auc": frame_metrics([online], truth).auc,
            "laap": latency_aware_ap(np.repeat(online, SNIPPET_FRAMES), truth),
            "offline_ap": frame_metrics([offline], truth).ap, "calibration": cal.to_dict(), "adaptation": info}


def before_metrics(before: dict[str, Any]) -> dict[str, Any]:
    """The previous step's figures, for a step that changed nothing."""
    return {k: before[k] for k in ("false_alarms", "fa_per_hour", "recall", "alarms")}


def offline_scores(bundle: Any, feats: np.ndarray) -> np.ndarray:
    """``vad analyze``'s scores of ``feats`` with ``bundle`` (256-snippet chunks)."""
    from model.inference import DSANetPredictor

    return DSANetPredictor(bundle).score(feats).anomaly.astype(np.float64)


# --- the run -------------------------------------------------------------------------------------------------------


def demo_engine(settings: WorkerSettings) -> StreamEngine:
    from workers.demo.cache import default_cache_dir, ensure_demo_bundle

    cache = Path(os.environ.get("VAD_DEMO_CACHE") or default_cache_dir())
    return StreamEngine(ensure_demo_bundle(DemoRecipe(), cache).path, settings)


def run(small: bool = False, cameras: Sequence[Camera] = CAMERAS, target: float = 1.0,
        engine: StreamEngine | None = None, cache: Path | None = None, test_minutes: float | None = None,
        adapt: bool = False) -> dict[str, Any]:
    """Score every camera and evaluate every step; the report as a dict (``cameras``: one entry per camera)."""
    settings = WorkerSettings(device="cpu", frame_pick="middle")
    engine = engine or demo_engine(settings)
    calibration_s, test_s, every_s = (125.0, 60.0, 60.0) if small else (600.0, 3600.0, 180.0)
    if test_minutes is not None:
        test_s = test_minutes * 60
    report: dict[str, Any] = {"form": "small" if small else "full", "calibration_s": calibration_s,
                              "test_s": test_s, "target_per_hour": target, "cameras": []}
    for camera in cameras:
        footage = score_camera(camera, engine, calibration_s, test_s, every_s, cache=cache)
        report.setdefault("replay_max_difference", check_replay(engine, footage.features))
        print(f"{camera.name}: scored ({footage.seconds})", file=sys.stderr, flush=True)
        steps = run_steps(footage, engine.class_names, settings, target)
        if adapt:
            steps.append(adaptation_step(footage, engine, settings, steps[-1], target, small))
        report["cameras"].append({"camera": camera.name, "describe": camera.describe(),
                                  "anomalies": len(footage.events), **score_metrics(footage),
                                  "steps": steps,
                                  "seconds": {k: round(v, 1) for k, v in footage.seconds.items()}})
    return report


def table(report: dict[str, Any]) -> str:
    lines = ["| camera | step | threshold | min event (s) | alarms | FA/h (false) | recall | frame AUC | LaAP (online) "
             "| AP (offline) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cam in report["cameras"]:
        for row in cam["steps"]:
            lines.append(f"| {cam['camera']} | {row['step']} | {row['threshold']:.6f} | {row['min_event_s']:.2f} | "
                         f"{row['alarms']} | {row['fa_per_hour']:.1f} ({row['false_alarms']}) | {row['recall']:.2f} | "
                         f"{row.get('auc', cam['auc']):.3f} | {row.get('laap', cam['laap']):.3f} | "
                         f"{row.get('offline_ap', cam['offline_ap']):.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="minutes of footage per camera (the test suite's form)")
    parser.add_argument("--cameras", default="", help="comma-separated camera names (default: all)")
    parser.add_argument("--target", type=float, default=1.0, help="calibration target, false alarms per hour")
    parser.add_argument("--no-adapt", action="store_true", help="leave out the step of 20 verdicts and adaptation")
    parser.add_argument("-o", "--output", type=Path, help="write the report as JSON")
    parser.add_argument("--test-minutes", type=float, help="minutes of test footage per camera (default: 60; 1 with "
                                                            "--small)")
    parser.add_argument("--cache", type=Path, help="keep each camera's scores here and reuse them (same form)")
    args = parser.parse_args(argv)
    chosen = [c for c in CAMERAS if not args.cameras or c.name in args.cameras.split(",")]
    started = time.perf_counter()
    report = run(args.small, chosen, args.target, cache=args.cache, test_minutes=args.test_minutes,
                 adapt=not args.no_adapt)
    report["seconds"] = round(time.perf_counter() - started, 1)
    for cam in report["cameras"]:
        print(f"{cam['camera']}: {cam['describe']}; {cam['anomalies']} anomalies; seconds {cam['seconds']}")
    print(table(report))
    print(f"run time {report['seconds']} s")
    if args.output:
        args.output.write_text(json.dumps(report, indent=2, default=lambda o: asdict(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
