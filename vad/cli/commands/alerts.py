"""Alert commands: calibrate the event threshold to a target false-alarm rate on normal videos."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from vad.cli.app import app, fail, offline_hub, setting_default
from vad.cli.commands.video import _errors, _settings


@app.command("calibrate")
def calibrate(
    videos: Annotated[list[Path], typer.Argument(help="Normal videos of the camera (no anomaly in them).")],
    target: Annotated[float, typer.Option("--target-false-alarms-per-hour", "-r",
                                          help="The target R (> 0): at most this many false alarms per hour.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Write the calibration JSON here.")],
    bundle: Annotated[Path | None, typer.Option("--bundle", "-b", help="Model bundle; default VAD_BUNDLE.")] = None,
    min_event: Annotated[float | None, typer.Option(
        help=f"Minimum event length the threshold is for, seconds ({setting_default('min_event_s')}).")] = None,
    merge_gap: Annotated[float | None, typer.Option(
        help=f"Merge gap of the event rule, seconds ({setting_default('merge_gap_s')}).")] = None,
    floor: Annotated[float | None, typer.Option(
        help="Lowest threshold it may choose (default: VAD_THRESHOLD, so it never makes the model more sensitive).")
    ] = None,
    device: Annotated[str | None, typer.Option(help=f"cpu, cuda, cuda:N or auto ({setting_default('device')}).")
                      ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
) -> None:
    """Choose the event threshold at which normal footage like VIDEOS raises at most R false alarms per hour.

    Each video is analysed as `vad analyze` does; their scores, one after the other, are fitted with a
    peaks-over-threshold model of the event rule's alarms (docs/alerts.md). `vad analyze --calibration FILE`
    then uses the threshold and minimum event length; the API takes the threshold as the upload's `threshold`
    option (docs/alerts.md).
    """
    offline_hub()
    settings = _settings(bundle=bundle, min_event_s=min_event, merge_gap_s=merge_gap, device=device)
    from vad.alerts import CalibrationError, CalibrationFile
    from vad.alerts import calibrate as fit
    from workers.analyzer import Analyzer

    scores: list[float] = []
    starts: list[float] = []
    ends: list[float] = []
    try:
        analyzer = Analyzer(settings=settings)
        for video in videos:
            timeline = analyzer.analyze(video).timeline
            offset = ends[-1] + settings.merge_gap_s if ends else 0.0  # never merged across two videos
            scores += timeline.score
            starts += [offset + s for s in timeline.start_s]
            ends += [offset + e for e in timeline.end_s]
        result = fit(scores, starts, ends, target_per_hour=target, min_event_s=settings.min_event_s,
                     merge_gap_s=settings.merge_gap_s, floor=settings.threshold if floor is None else floor)
    except CalibrationError as exc:
        raise fail(str(exc)) from exc
    except _errors() as exc:
        raise fail(str(exc)) from exc
    doc = CalibrationFile(threshold=result.threshold, min_event_s=result.min_event_s,
                          merge_gap_s=settings.merge_gap_s, model_sha256=analyzer.model.bundle_sha256 or "",
                          videos=[v.name for v in videos], created_at=time.time(), figures=result.to_dict())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(doc.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if not quiet:
        expected = result.expected_false_alarms_per_hour
        typer.echo(f"threshold {result.threshold:.6f} (method {result.method}, min event {result.min_event_s:g} s) "
                   f"from {result.normal_s / 60:.1f} min of scores; expected "
                   f"{'n/a' if expected is None else f'{expected:.2f}'} false alarms/h, "
                   f"{result.observed_false_alarms_per_hour:.2f}/h on these videos; wrote {output}", err=True)
    sys.stdout.flush()
