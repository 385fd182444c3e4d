"""The alert threshold of a camera or a video: calibration to a target false-alarm rate, and the verdict rule.

Pure Python (no numpy), so that the API, the workers and the CLI apply the same rule: the API calibrates a stream
from its stored timeline and moves its threshold on a verdict, a worker calibrates a new stream over its first
minutes, ``vad calibrate`` calibrates from videos. docs/alerts.md explains the method; in short:

* **Events are counted as the event rule forms them.** With a minimum event length ``m``, an event exists at level
  ``u`` only where the scores stay above ``u`` for ``m`` seconds, so the scores are first replaced by their
  *persistent* level (the lowest score of the last ``k`` snippets, ``k`` snippets lasting ``m``). Runs of it above
  a base level ``u0`` separated by less than the merge gap form one **cluster** (what the tracker would open as one
  event at ``u0``); each cluster's maximum is the highest threshold at which it would still raise an alarm.
* **Peaks over threshold.** The cluster maxima above ``u0``, on the logit scale (the scores are probabilities that
  saturate near 1; their logits have an unbounded tail), are fitted with a generalised Pareto distribution
  (probability-weighted moments, Hosking & Wallis 1987). The rate of alarms above ``u > u0`` is then
  ``λ(u) = (k / T) · (1 + ξ (u - u0) / σ) ^ (-1/ξ)`` and the threshold solves ``λ(u) = R``. A fitted ``ξ < 0`` (a
  bounded tail) is replaced by the exponential of the same mean excess (``ξ = 0``, ``σ`` = the mean): a tail at
  least as heavy as the exponential, a conservative choice for a rate bound; ``ξ`` is capped at 1.
* **Floors.** The threshold is never below ``floor`` (default: the model's default threshold, so calibration does
  not make a camera noisier than out of the box), and never below what the stretch itself shows: at most
  ``⌊R · T⌋`` of its clusters may lie above it.
* **Fallback.** With fewer than :data:`MIN_CLUSTERS` clusters above any base level, or less than
  :data:`MIN_NORMAL_S` of scores, no fit is trusted: the threshold is the highest persistent score seen plus a
  margin of :data:`FALLBACK_MARGIN_LOGIT` on the logit scale (``source`` says ``fallback``).

Assumptions: the stretch is normal (any anomaly in it raises the threshold), and what is normal there stays normal
(a camera's nuisances recur at the same rate); clusters are counted at the base level, so one cluster that would
split into two alarms at a higher threshold counts once (the merge gap makes that rare).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ThresholdSource = Literal["default", "calibrated", "auto", "verdict"]
"""Where a stream's threshold in force came from: the deployment's or the stream's ``threshold`` (``default``),
``POST .../calibrate`` (``calibrated``), the automatic calibration of a new stream (``auto``), a verdict
(``verdict``)."""

MIN_CLUSTERS = 10
"""Clusters above the base level a fit needs; fewer: the fallback."""
MIN_NORMAL_S = 120.0
"""Seconds of scores a calibration needs at least (shorter: refused)."""
FALLBACK_MARGIN_LOGIT = 1.0
"""How far above the highest persistent score the fallback puts the threshold, on the logit scale."""
VERDICT_MARGIN_LOGIT = 0.05
"""How far above a false alarm's peak (below a true alert's) the verdict rule puts the threshold (logit scale)."""
MAX_THRESHOLD = 0.999999
"""The highest threshold a calibration gives (a score above it is still an alarm)."""
BASE_QUANTILES = (0.98, 0.95, 0.9, 0.8, 0.7, 0.5)
"""Quantiles of the persistent scores tried as the base level ``u0``, highest first, until enough clusters."""
_EPS = 1e-7


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True)
class Calibration:
    """A threshold chosen for a target false-alarm rate, and the figures it was chosen from.

    Attributes:
        threshold: Scores strictly above it (for ``min_event_s``) raise an alarm.
        min_event_s: The minimum event length it was computed for.
        target_false_alarms_per_hour: The target ``R``.
        expected_false_alarms_per_hour: The fitted rate at ``threshold`` (``None`` for the fallback).
        observed_false_alarms_per_hour: Alarms the event rule gives on the stretch itself at ``threshold``.
        normal_s: Seconds of scores in the stretch.
        snippets: Scores in the stretch.
        clusters: Clusters above the base level.
        base_threshold: The base level ``u0`` (a probability).
        shape: The fitted GPD shape ``ξ`` as used (``>= 0``), on the logit scale (``None``: fallback).
        scale: The fitted GPD scale ``σ`` on the logit scale (``None``: fallback).
        method: ``pot`` (the fit), ``fallback`` (too few clusters), ``floor`` (the floor was above both).
        floor: The floor in force.
    """

    threshold: float
    min_event_s: float
    target_false_alarms_per_hour: float
    expected_false_alarms_per_hour: float | None
    observed_false_alarms_per_hour: float
    normal_s: float
    snippets: int
    clusters: int
    base_threshold: float | None
    shape: float | None
    scale: float | None
    method: Literal["pot", "fallback", "floor"]
    floor: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out.update(self.extra)
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


class CalibrationError(ValueError):
    """The scores cannot be calibrated (too few, inconsistent, or a setting out of range)."""


def persistent_scores(scores: Sequence[float], snippet_s: float, min_event_s: float) -> list[float]:
    """The level each snippet's run has held for ``min_event_s``: the lowest of the last ``k`` scores, where ``k``
    snippets of ``snippet_s`` reach ``min_event_s`` (``k = 1`` for 0). An alarm at threshold ``u`` opens at the
    first snippet whose persistent score exceeds ``u``."""
    k = max(1, math.ceil(min_event_s / snippet_s - 1e-9)) if min_event_s > 0 else 1
    if k == 1:
        return list(scores)
    out: list[float] = []
    window: list[tuple[int, float]] = []  # a monotone deque of (index, value): the window's minimum in O(n)
    for i, s in enumerate(scores):
        while window and window[-1][1] >= s:
            window.pop()
        window.append((i, s))
        if window[0][0] <= i - k:
            window.pop(0)
        out.append(window[0][1] if i >= k - 1 else 0.0)
    return out


def cluster_maxima(levels: Sequence[float], starts: Sequence[float], ends: Sequence[float], base: float,
                   merge_gap_s: float) -> list[float]:
    """Maxima of the clusters of ``levels > base``: runs whose gap (next start minus last end) is shorter than
    ``merge_gap_s`` are one cluster, as the event rule merges them."""
    maxima: list[float] = []
    last_end: float | None = None
    for level, start, end in zip(levels, starts, ends, strict=True):
        if level <= base:
            continue
        if last_end is not None and start - last_end < merge_gap_s:
            maxima[-1] = max(maxima[-1], level)
        else:
            maxima.append(level)
        last_end = end
    return maxima


def gpd_pwm(excesses: Sequence[float]) -> tuple[float, float]:
    """Shape ``ξ`` and scale ``σ`` of a generalised Pareto distribution fitted to positive excesses by
    probability-weighted moments (Hosking & Wallis 1987): ``a0 = E[Y]``, ``a1 = E[Y (1 - F(Y))]``,
    ``ξ = 2 - a0 / (a0 - 2 a1)``, ``σ = 2 a0 a1 / (a0 - 2 a1)``."""
    y = sorted(excesses)
    n = len(y)
    if n < 2:
        raise CalibrationError(f"a fit needs at least 2 excesses, got {n}")
    a0 = sum(y) / n
    a1 = sum(v * (n - 1 - i) / (n - 1) for i, v in enumerate(y)) / n
    denom = a0 - 2 * a1
    if a0 <= 0 or denom <= 1e-9 * a0:  # all equal, or degenerate: an exponential of the mean
        return 0.0, max(a0, 1e-6)
    return 2.0 - a0 / denom, 2.0 * a0 * a1 / denom


def gpd_rate(z: float, z0: float, rate0: float, shape: float, scale: float) -> float:
    """The rate of clusters whose maximum (logit) exceeds ``z >= z0``, given ``rate0`` above ``z0``."""
    y = max(0.0, z - z0)
    if abs(shape) < 1e-9:
        return rate0 * math.exp(-y / scale)
    base = 1.0 + shape * y / scale
    return 0.0 if base <= 0 else rate0 * base ** (-1.0 / shape)


def gpd_level(rate: float, z0: float, rate0: float, shape: float, scale: float) -> float:
    """The logit level above which clusters come at ``rate`` (the inverse of :func:`gpd_rate`)."""
    if rate >= rate0:
        return z0
    ratio = rate0 / rate
    if abs(shape) < 1e-9:
        return z0 + scale * math.log(ratio)
    return z0 + scale / shape * (ratio ** shape - 1.0)


def count_alarms(scores: Sequence[float], starts: Sequence[float], ends: Sequence[float], threshold: float,
                 min_event_s: float, merge_gap_s: float) -> int:
    """Alarms the event rule (runs above ``threshold`` lasting ``min_event_s``, gaps under ``merge_gap_s`` merged;
    :mod:`workers.stream.event_tracker` without hysteresis) gives on these scores."""
    count, run_start, run_end, announced = 0, None, None, False
    for s, start, end in zip(scores, starts, ends, strict=True):
        if s > threshold:
            if run_end is not None and start - run_end >= merge_gap_s:
                run_start, announced = None, False
            if run_start is None:
                run_start = start
            run_end = end
            if not announced and run_end - run_start >= min_event_s:
                count, announced = count + 1, True
        elif run_end is not None and end - run_end >= merge_gap_s:
            run_start, run_end, announced = None, None, False
    return count


def calibrate(scores: Sequence[float], starts: Sequence[float], ends: Sequence[float], *,
              target_per_hour: float, min_event_s: float = 0.0, merge_gap_s: float = 0.5, floor: float = 0.5,
              min_normal_s: float = MIN_NORMAL_S) -> Calibration:
    """The threshold at which the event rule raises at most ``target_per_hour`` alarms per hour on scores like these
    normal ones (the module docstring has the method).

    Args:
        scores: Anomaly scores of consecutive snippets of normal footage (one stream or the videos one after the
            other; ``starts``/``ends`` in one time line).
        starts: Start time of each snippet (s).
        ends: End time of each snippet (s).
        target_per_hour: The target rate ``R`` (> 0).
        min_event_s: The minimum event length the threshold is for.
        merge_gap_s: The event rule's merge gap.
        floor: The lowest threshold it may give.
        min_normal_s: Refuse stretches shorter than this.

    Raises:
        CalibrationError: A setting out of range, inconsistent lengths, or a stretch shorter than ``min_normal_s``.
    """
    if not target_per_hour > 0 or not math.isfinite(target_per_hour):
        raise CalibrationError(f"target_false_alarms_per_hour must be > 0, got {target_per_hour}")
    if not 0.0 <= floor < 1.0 or min_event_s < 0 or merge_gap_s < 0:
        raise CalibrationError(f"need 0 <= floor < 1, min_event_s >= 0, merge_gap_s >= 0; got {floor}, "
                               f"{min_event_s}, {merge_gap_s}")
    n = len(scores)
    if len(starts) != n or len(ends) != n:
        raise CalibrationError(f"{n} scores but {len(starts)} starts and {len(ends)} ends")
    if any(not math.isfinite(s) or not 0.0 <= s <= 1.0 for s in scores):
        raise CalibrationError("scores must be probabilities in [0, 1]")
    normal_s = sum(e - s for s, e in zip(starts, ends, strict=True)) if n else 0.0
    if normal_s < min_normal_s:
        raise CalibrationError(f"{normal_s:.0f} s of scores is too short to calibrate: give at least "
                               f"{min_normal_s:.0f} s of normal footage (10 minutes or more is better)")
    snippet_s = normal_s / n
    hours = normal_s / 3600.0
    levels = persistent_scores(scores, snippet_s, min_event_s)
    fit = _fit(levels, starts, ends, merge_gap_s, hours, target_per_hour)
    if fit is None:
        top = max(levels) if levels else 0.0
        chosen, method = sigmoid(logit(top) + FALLBACK_MARGIN_LOGIT), "fallback"
    else:
        chosen, method = _at_most_observed(levels, starts, ends, sigmoid(fit["level"]), merge_gap_s,
                                           int(target_per_hour * hours)), "pot"
    if chosen < floor:
        chosen, method = floor, "floor"
    threshold = min(chosen, MAX_THRESHOLD)
    observed = count_alarms(scores, starts, ends, threshold, min_event_s, merge_gap_s) / hours
    expected = None if fit is None else gpd_rate(logit(threshold), fit["z0"], fit["rate0"], fit["shape"],
                                                 fit["scale"])
    return Calibration(threshold=threshold, min_event_s=min_event_s, target_false_alarms_per_hour=target_per_hour,
                       expected_false_alarms_per_hour=expected, observed_false_alarms_per_hour=observed,
                       normal_s=normal_s, snippets=n, clusters=0 if fit is None else fit["clusters"],
                       base_threshold=None if fit is None else sigmoid(fit["z0"]),
                       shape=None if fit is None else fit["shape"], scale=None if fit is None else fit["scale"],
                       method=method, floor=floor)  # type: ignore[arg-type]


def _at_most_observed(levels: list[float], starts: Sequence[float], ends: Sequence[float], level: float,
                      merge_gap_s: float, allowed: int) -> float:
    """``level``, raised until the stretch itself shows at most ``allowed`` alarms above it (``⌊R · T⌋``)."""
    for _ in range(50):
        maxima = sorted(cluster_maxima(levels, starts, ends, level, merge_gap_s), reverse=True)
        if len(maxima) <= allowed:
            break
        level = sigmoid(logit(maxima[allowed]) + 1e-6)
    return level


def _fit(levels: list[float], starts: Sequence[float], ends: Sequence[float], merge_gap_s: float, hours: float,
         target: float) -> dict[str, Any] | None:
    """The GPD fit at the highest base quantile with :data:`MIN_CLUSTERS` clusters above it, or ``None``."""
    ordered = sorted(levels)
    for q in BASE_QUANTILES:
        base = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        maxima = cluster_maxima(levels, starts, ends, base, merge_gap_s)
        if len(maxima) < MIN_CLUSTERS:
            continue
        z0 = logit(base)
        excesses = [logit(m) - z0 for m in maxima]
        if max(excesses) <= 0:
            continue
        shape, scale = gpd_pwm([max(y, 1e-9) for y in excesses])
        if shape < 0:  # a bounded tail: take the exponential of the same mean instead (conservative for a rate bound)
            shape, scale = 0.0, sum(excesses) / len(excesses)
        shape = min(shape, 1.0)
        rate0 = len(maxima) / hours
        return {"z0": z0, "rate0": rate0, "shape": shape, "scale": scale, "clusters": len(maxima),
                "level": gpd_level(target, z0, rate0, shape, scale)}
    return None


# --- the verdict rule ------------------------------------------------------------------------------------------


def threshold_after_false_alarm(current: float, false_alarm_peak: float,
                                true_alert_peaks: Sequence[float] = ()) -> float:
    """The threshold after a false-alarm verdict on an event that peaked at ``false_alarm_peak``.

    The rule: raise the threshold just above the false alarm's peak (:data:`VERDICT_MARGIN_LOGIT` on the logit
    scale), so that the same picture does not alarm again, unless that would silence a confirmed true alert of the
    same camera: then it goes just below the lowest confirmed true alert's peak instead. It never goes down (a
    false alarm never makes a camera more sensitive) and never above :data:`MAX_THRESHOLD`.
    """
    raised = min(sigmoid(logit(false_alarm_peak) + VERDICT_MARGIN_LOGIT), MAX_THRESHOLD)
    if true_alert_peaks:
        raised = min(raised, sigmoid(logit(min(true_alert_peaks)) - VERDICT_MARGIN_LOGIT))
    return max(current, raised)


# --- the calibration file of `vad calibrate` -----------------------------------------------------------------------


class CalibrationFile(BaseModel):
    """``calibration.json``, written by ``vad calibrate`` and read by ``vad analyze --calibration``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["vad-calibration"] = "vad-calibration"
    version: Literal[1] = 1
    threshold: float = Field(ge=0.0, le=1.0, description="The event threshold to use.")
    min_event_s: float = Field(ge=0.0, description="The minimum event length to use.")
    merge_gap_s: float = Field(ge=0.0, description="The merge gap it was computed for.")
    model_sha256: str = Field(description="SHA-256 of the bundle whose scores it was computed from.")
    videos: list[str] = Field(description="The normal videos' file names.")
    created_at: float = Field(description="Unix time.")
    figures: dict[str, Any] = Field(description="The calibration's figures (Calibration.to_dict()).")

    @classmethod
    def read(cls, path: str) -> CalibrationFile:
        """Read and validate ``path``.

        Raises:
            CalibrationError: Unreadable, not JSON, or not a calibration file (the message says which field).
        """
        try:
            with open(path, encoding="utf-8") as handle:
                return cls.model_validate(json.load(handle))
        except OSError as exc:
            raise CalibrationError(f"cannot read the calibration {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:  # JSON or validation
            raise CalibrationError(f"{path} is not a calibration file of `vad calibrate`: "
                                   f"{' '.join(str(exc).split())[:300]}") from exc


# --- a stream's threshold in force ---------------------------------------------------------------------------------


class AlertThreshold(BaseModel):
    """The threshold a stream's event tracker uses now (the stream record's ``alert``), and where it came from."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0.0, le=1.0, description="Scores above it (for `min_event_s`) open an event.")
    min_event_s: float = Field(0.0, ge=0.0, description="An event opens once it has lasted this long.")
    source: ThresholdSource = Field(description="default (the stream's `threshold` or the workers' VAD_THRESHOLD), "
                                                "calibrated (POST .../calibrate), auto (the stream's automatic "
                                                "calibration), verdict (a false-alarm verdict raised it).")
    at: float = Field(description="When it was put in force (Unix time).")
    reason: str | None = Field(None, description="What set it, in words (the verdict's event, the window…).")
    calibration: dict[str, Any] | None = Field(None, description="The latest calibration's figures (kept when a "
                                                                 "verdict moves the threshold afterwards).")


class AutoCalibrate(BaseModel):
    """A stream option: calibrate on the stream's first ``minutes`` (declared normal) once they are scored."""

    model_config = ConfigDict(extra="forbid")

    minutes: float = Field(ge=MIN_NORMAL_S / 60, le=60.0, description="Minutes of the stream's start to calibrate "
                                                                      "on (2-60; the timeline must keep them).")
    target_false_alarms_per_hour: float = Field(gt=0.0, le=3600.0, description="The target R.")


def calibrate_points(points: Sequence[tuple[float, float, float]], *, target_per_hour: float, min_event_s: float,
                     merge_gap_s: float, floor: float) -> Calibration:
    """:func:`calibrate` on a stream's timeline points ``(score, start_s, end_s)`` in time order (gaps from
    reconnections or dropped snippets do not count as footage)."""
    return calibrate([p[0] for p in points], [p[1] for p in points], [p[2] for p in points],
                     target_per_hour=target_per_hour, min_event_s=min_event_s, merge_gap_s=merge_gap_s, floor=floor)
