"""Video commands: analyse one video end to end; extract VadCLIP-layout features of a folder for training."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vad.cli.app import Precision, app, fail, invalid_settings, offline_hub, setting_default

if TYPE_CHECKING:
    from workers.settings import WorkerSettings

FRAME_PICK_HELP = "Frame of each 16-frame snippet to embed: first, middle, an offset 0-15, or mean (all 16, averaged)."
CROP_HELP = ("View embedded per frame: auto (the preset's test crop: center_flip for UCF, center for XD), center, "
             "top_left, top_right, bottom_left, bottom_right, or one of these with _flip (mirrored), e.g. center_flip.")


def _frame_pick(value: str | None) -> str | int | None:
    return int(value) if value is not None and value.isdigit() else value


def _settings(**explicit: Any) -> WorkerSettings:
    """Worker settings from the environment, with the options given on the command line winning."""
    from pydantic import ValidationError

    from workers.settings import WorkerSettings

    try:
        return WorkerSettings(**{k: v for k, v in explicit.items() if v is not None})
    except ValidationError as exc:
        raise invalid_settings(exc) from exc


def _errors() -> tuple[type[Exception], ...]:
    from model.exceptions import ModelError
    from workers.exceptions import WorkerError

    return (WorkerError, ModelError, ValueError, OSError)


@app.command("analyze")
def analyze(
    video: Annotated[Path, typer.Argument(help="The video file.")],
    bundle: Annotated[Path | None, typer.Option("--bundle", "-b", help="Model bundle; default VAD_BUNDLE.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result JSON here (else stdout).")
                      ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the score over time with events.")
                    ] = None,
    frame_scores: Annotated[bool, typer.Option("--frame-scores", help="Add one score per decoded frame.")] = False,
    threshold: Annotated[float | None, typer.Option(
        help=f"Event threshold on the anomaly score ({setting_default('threshold')}).")] = None,
    merge_gap: Annotated[float | None, typer.Option(
        help=f"Merge events closer than this, seconds ({setting_default('merge_gap_s')}).")] = None,
    min_event: Annotated[float | None, typer.Option(
        help=f"Drop events shorter than this, seconds ({setting_default('min_event_s')}).")] = None,
    frame_pick: Annotated[str | None, typer.Option(help=FRAME_PICK_HELP)] = None,
    crop: Annotated[str | None, typer.Option(help=CROP_HELP)] = None,
    device: Annotated[str | None, typer.Option(help=f"cpu, cuda, cuda:N or auto ({setting_default('device')}).")
                      ] = None,
    precision: Annotated[Precision | None, typer.Option(
        help=f"DSANet precision; fp32 matches the authors ({setting_default('precision')}).")] = None,
    skip_unchanged: Annotated[float | None, typer.Option(
        help="Reuse the last encoded snippet's CLIP features for a snippet whose frame moved no cell (1/64 of the "
             "width) by more than this many grey levels: fewer encoder passes on static footage, scores no longer "
             f"the official protocol's ({setting_default('skip_unchanged')}: off).")] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="A calibration of `vad calibrate`: its threshold and minimum event length (not with --threshold or "
             "--min-event).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Analyse a video: anomaly score and class probabilities per 16-frame snippet, events, summary (JSON)."""
    offline_hub()
    calibrated = _calibration(calibration, threshold, min_event)
    if calibrated is not None:
        threshold, min_event = calibrated.threshold, calibrated.min_event_s
    settings = _settings(bundle=bundle, frame_scores=frame_scores or None, threshold=threshold,
                         merge_gap_s=merge_gap, min_event_s=min_event, frame_pick=_frame_pick(frame_pick), crop=crop,
                         device=device, precision=precision.value if precision else None,
                         skip_unchanged=skip_unchanged)
    from tqdm import tqdm

    from vad.cli.plot import plot_timeline
    from workers.analyzer import Analyzer

    try:
        analyzer = Analyzer(settings=settings)
        if calibrated is not None and calibrated.model_sha256 != analyzer.model.bundle_sha256:
            mine = (analyzer.model.bundle_sha256 or "")[:12]
            raise fail(f"{calibration} was computed with another model (bundle {calibrated.model_sha256[:12]}…, "
                       f"this one is {mine}…): run `vad calibrate` with this bundle")
        bar_format = "{desc:<9} {bar} {n:.0f}%"
        with tqdm(total=100, disable=quiet, file=sys.stderr, leave=False, bar_format=bar_format) as bar:
            def progress(stage: str, fraction: float) -> None:
                bar.set_description_str(stage, refresh=False)
                bar.update(round(100 * fraction) - bar.n)

            result = analyzer.analyze(video, progress=progress)
        if plot is not None:
            plot_timeline(result, plot)
    except _errors() as exc:
        raise fail(str(exc)) from exc
    text = result.model_dump_json(by_alias=True)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n", encoding="utf-8")
    if not quiet:
        _print_summary(result, output, plot)


def _calibration(path: Path | None, threshold: float | None, min_event: float | None) -> Any:
    """The calibration file at ``path`` (``None`` when not given); refused beside an explicit threshold."""
    if path is None:
        return None
    if threshold is not None or min_event is not None:
        raise fail("--calibration sets the threshold and minimum event length: leave out --threshold and --min-event")
    from vad.alerts import CalibrationError, CalibrationFile

    try:
        return CalibrationFile.read(str(path))
    except CalibrationError as exc:
        raise fail(str(exc)) from exc


def _print_summary(result: Any, output: Path | None, plot: Path | None) -> None:
    s, v = result.summary, result.video
    model = f"{result.model.preset}" + (" [SYNTHETIC DEMO MODEL]" if result.model.demo else "")
    lines = [f"{v.filename}: {v.frames} frames at {v.fps:.3g} fps ({v.duration_s:.1f} s, {v.width}x{v.height}, "
             f"{v.decoder}); model {model}; {len(result.timeline.score)} snippets",
             f"max score {s.max_score:.3f}, mean {s.mean_score:.3f}; top classes "
             + ", ".join(f"{c.class_} {c.prob:.3f}" for c in s.top_classes)]
    lines += [f"event {e.start_s:7.2f}-{e.end_s:7.2f} s  {e.class_:<14} peak {e.peak_score:.3f}, "
              f"mean {e.mean_score:.3f}" for e in result.events] or ["no event above the threshold"]
    lines += [f"warning: {w}" for w in v.warnings]
    lines += [f"wrote {p}" for p in (output, plot) if p is not None]
    typer.echo("\n".join(lines), err=True)


@app.command("extract")
def extract(
    videos_dir: Annotated[Path, typer.Argument(help="Folder of videos, searched recursively; a video's label is its "
                                                    "folder's name (videos directly in it: its own name, with a "
                                                    "warning).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Feature folder (VadCLIP layout + list.csv).")],
    crops: Annotated[int, typer.Option(help="10: the ten-crop layout __0..__9 (training); 1: the test view only.")
                     ] = 10,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", "-b", help="Take CLIP (and the test view) from this bundle; default VAD_BUNDLE "
        "(without one: VAD_CLIP_WEIGHTS or open_clip's cache).")] = None,
    label: Annotated[str | None, typer.Option(help="Label of every video in list.csv (default: its folder name).")
                     ] = None,
    frame_pick: Annotated[str | None, typer.Option(help=FRAME_PICK_HELP)] = None,
    resize: Annotated[int | None, typer.Option(help="Short side before cropping (default: the CLIP input size).")
                      ] = None,
    device: Annotated[str | None, typer.Option(help=f"cpu, cuda, cuda:N or auto ({setting_default('device')}).")
                      ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Extract CLIP features of every video in a folder, in the VadCLIP layout, for `vad train`.

    Resumable: videos whose feature files exist are skipped. Videos that cannot be decoded are listed
    and skipped; the exit code is then 1.
    """
    offline_hub()
    if crops not in (1, 10):
        raise fail(f"--crops must be 1 or 10, got {crops}")
    if not videos_dir.is_dir():
        raise fail(f"{videos_dir} is not a folder")
    settings = _settings(bundle=bundle, frame_pick=_frame_pick(frame_pick), resize=resize, device=device)
    from tqdm import tqdm

    from model.bundle import load_bundle
    from workers.encode.clip_encoder import ClipImageEncoder
    from workers.encode.extract import VIDEO_SUFFIXES, extract_folder, find_videos, unlabelled_warning
    from workers.encode.features import FeatureExtractor
    from workers.encode.preprocess import view_index

    found = find_videos(videos_dir)
    count = len(found)
    if count == 0:
        raise fail(f"no video files under {videos_dir} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    warning = unlabelled_warning(videos_dir, found) if label is None else None
    if warning is not None:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    try:
        loaded = load_bundle(settings.bundle) if settings.bundle is not None else None
        encoder = ClipImageEncoder.create(settings, loaded)
        test_crop = loaded.config.training.test_crop if loaded is not None else 0
        views = list(range(10)) if crops == 10 else [view_index(settings.view_for(test_crop))]
        del loaded
        with tqdm(total=count, unit="video", disable=quiet, file=sys.stderr) as bar:
            def on_video(video: Path, status: str, detail: str | None) -> None:
                bar.set_postfix_str(f"{status} {video.name}", refresh=False)
                bar.update(1)
                if detail:
                    bar.write(f"{video}: {status}: {detail}", file=sys.stderr)

            report = extract_folder(videos_dir, output, FeatureExtractor(encoder, settings), views, label=label,
                                    on_video=on_video)
    except _errors() as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"{len(report.extracted)} extracted, {len(report.skipped)} already done, {len(report.failed)} failed; "
               f"{report.list_csv} lists {report.rows} feature files (views {', '.join(f'__{v}' for v in views)})",
               err=True)
    if report.failed:
        raise typer.Exit(code=1)
