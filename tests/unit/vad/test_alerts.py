"""Calibration to a target false-alarm rate and the verdict rule (vad/alerts.py), on synthetic score sequences."""

from __future__ import annotations

import numpy as np
import pytest

from vad.alerts import (
    MAX_THRESHOLD,
    CalibrationError,
    calibrate,
    count_alarms,
    gpd_pwm,
    threshold_after_false_alarm,
)

SNIPPET_S = 0.32


def scores(hours: float, seed: int, phi: float = 0.8) -> tuple[list[float], list[float], list[float]]:
    """Normal scores like a model's: a smooth (AR(1)) heavy-tailed process on the logit scale, mostly low."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(hours * 3600 / SNIPPET_S)
    z = lfilter([1.0], [1.0, -phi], rng.standard_t(4, size=n) * 0.5)
    starts = np.arange(n) * SNIPPET_S
    return (1 / (1 + np.exp(-(z - 3)))).tolist(), starts.tolist(), (starts + SNIPPET_S).tolist()


@pytest.fixture(scope="module")
def fresh() -> tuple[list[float], list[float], list[float]]:
    """20 hours of the same process, never calibrated on: the realised rate."""
    return scores(20.0, 999)


@pytest.mark.parametrize(("target", "min_event_s"), [(1.0, 0.0), (5.0, 0.64)])
def test_the_realised_rate_stays_within_the_stated_bounds(fresh, target, min_event_s) -> None:
    """Calibrated on 1 hour, the alarm rate on 20 fresh hours is at most 3 R for every seed (docs/alerts.md: the fit's
    error from one hour of data), and not needlessly conservative: the median is at least R / 4."""
    realised = []
    for seed in range(4):
        cal = calibrate(*scores(1.0, seed), target_per_hour=target, min_event_s=min_event_s, floor=0.0)
        assert cal.method == "pot" and cal.clusters >= 10
        assert cal.observed_false_alarms_per_hour <= target
        realised.append(count_alarms(*fresh, cal.threshold, min_event_s, 0.5) / 20.0)
    assert max(realised) <= 3 * target, realised
    assert np.median(realised) >= target / 4, realised


def test_a_lower_target_gives_a_higher_threshold_and_the_floor_holds() -> None:
    data = scores(1.0, 7)
    strict, loose = (calibrate(*data, target_per_hour=r, floor=0.0) for r in (0.2, 20.0))
    assert strict.threshold > loose.threshold
    assert calibrate(*data, target_per_hour=20.0, floor=0.995).threshold == pytest.approx(0.995)
    assert calibrate(*data, target_per_hour=20.0, floor=0.995).method == "floor"


def test_too_few_clusters_fall_back_above_the_highest_score() -> None:
    flat = [0.1] * 1000
    flat[500] = 0.6
    starts = [i * SNIPPET_S for i in range(1000)]
    cal = calibrate(flat, starts, [s + SNIPPET_S for s in starts], target_per_hour=1.0, floor=0.0)
    assert cal.method == "fallback" and cal.expected_false_alarms_per_hour is None
    assert 0.6 < cal.threshold < MAX_THRESHOLD
    assert cal.observed_false_alarms_per_hour == 0


def test_bad_input_is_refused() -> None:
    s, st, en = scores(0.01, 1)  # 36 s
    with pytest.raises(CalibrationError, match="too short"):
        calibrate(s, st, en, target_per_hour=1.0)
    s, st, en = scores(0.1, 1)
    with pytest.raises(CalibrationError, match="must be > 0"):
        calibrate(s, st, en, target_per_hour=0.0)
    with pytest.raises(CalibrationError, match="probabilities"):
        calibrate([2.0, *s[1:]], st, en, target_per_hour=1.0)


def test_the_pwm_fit_recovers_a_known_pareto_tail() -> None:
    rng = np.random.default_rng(3)
    xi, sigma = 0.2, 1.5
    y = sigma / xi * ((1 - rng.random(20000)) ** -xi - 1)
    shape, scale = gpd_pwm(y.tolist())
    assert shape == pytest.approx(xi, abs=0.05) and scale == pytest.approx(sigma, rel=0.05)


def test_the_verdict_rule() -> None:
    # a false alarm raises the threshold just above its peak
    assert 0.9 < threshold_after_false_alarm(0.5, 0.9) < 0.91
    # never lowers it
    assert threshold_after_false_alarm(0.95, 0.9) == 0.95
    # but stays below the lowest confirmed true alert's peak
    capped = threshold_after_false_alarm(0.5, 0.97, true_alert_peaks=[0.99, 0.93])
    assert 0.92 < capped < 0.93
    # already above a true alert's peak (an earlier setting): unchanged
    assert threshold_after_false_alarm(0.95, 0.97, true_alert_peaks=[0.93]) == 0.95
    assert threshold_after_false_alarm(0.5, 1.0) == MAX_THRESHOLD


def test_vad_analyze_refuses_a_file_that_is_not_a_calibration_and_one_beside_a_threshold(tmp_path) -> None:
    from typer.testing import CliRunner

    import vad.cli  # noqa: F401 - registers every command
    from vad.alerts import CalibrationFile
    from vad.cli.app import app

    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    bad = tmp_path / "bad.json"
    bad.write_text('{"threshold": 2}')
    result = CliRunner().invoke(app, ["analyze", str(video), "--calibration", str(bad)])
    assert result.exit_code == 2 and "not a calibration file" in result.output
    good = tmp_path / "calibration.json"
    good.write_text(CalibrationFile(threshold=0.8, min_event_s=0.0, merge_gap_s=1.0, model_sha256="ab",
                                    videos=["n.mp4"], created_at=1.0, figures={}).model_dump_json())
    assert CalibrationFile.read(str(good)).threshold == 0.8
    result = CliRunner().invoke(app, ["analyze", str(video), "--calibration", str(good), "--threshold", "0.3"])
    assert result.exit_code == 2 and "leave out --threshold" in result.output
