"""``vad watch``: one camera (or a file) scored live in-process, events printed as they open and close.

The same online scorer as the service's streams (:mod:`workers.stream`), without Redis or the API: a line per
event, a one-line score display (a sparkline redrawn in place on a terminal, a plain line every few seconds
otherwise), ``--jsonl`` for every score and event, and a summary on Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from vad.cli.app import app, fail, offline_hub, setting_default

if TYPE_CHECKING:
    from workers.stream import EventUpdate, SnippetScore, StreamStatus

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 40
PLAIN_EVERY_S = 5.0
"""Seconds between score lines when the output is not a terminal."""


def sparkline(scores: list[float]) -> str:
    """One block character per score in ``[0, 1]``."""
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int(s * len(SPARK))))] for s in scores)


def clock(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss`` past an hour)."""
    minutes, secs = divmod(max(0.0, seconds), 60)
    if minutes >= 60:
        return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{int(secs):02d}"
    return f"{int(minutes):02d}:{secs:04.1f}"


class TerminalSink:
    """Prints events and the score display; writes JSON lines when asked. Implements ``StreamSink``."""

    def __init__(self, out: IO[str], class_names: tuple[str, ...], *, tty: bool, jsonl: IO[str] | None = None,
                 threshold: float = 0.5) -> None:
        self.out, self.tty, self.jsonl = out, tty, jsonl
        self.class_names = class_names
        self.threshold = threshold
        self.recent: list[float] = []
        self.latest: StreamStatus | None = None
        self.events: list[EventUpdate] = []
        self.max_score = 0.0
        self.last_plain = 0.0
        self.last_time = 0.0
        self.drawn = False

    def _json(self, kind: str, body: dict[str, Any]) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"type": kind, **body}) + "\n")
            self.jsonl.flush()

    def _line(self, text: str) -> None:
        if self.drawn:
            self.out.write("\r\x1b[K")
            self.drawn = False
        self.out.write(text + "\n")
        self.out.flush()

    def status(self, status: StreamStatus) -> None:
        previous, self.latest = self.latest, status
        if previous is None or (previous.state, previous.reason) != (status.state, status.reason):
            self._json("status", status.to_dict())
            size = f", {status.width}x{status.height} at {status.fps:.3g} fps" if status.fps and status.width else ""
            why = f": {status.reason}" if status.reason and status.state != "live" else ""
            self._line(f"[{status.state}] {status.url}{size}{why}")
        self._draw()

    def score(self, score: SnippetScore) -> None:
        self._json("score", score.to_dict(self.class_names))
        self.recent = [*self.recent, score.score][-SPARK_WIDTH:]
        self.max_score = max(self.max_score, score.score)
        self.last_time = score.end_s
        self._draw()

    def event(self, update: EventUpdate) -> None:
        self._json("event", update.to_dict())
        e = update.event
        if update.kind == "open":
            self._line(f"{clock(e.start_s)}  EVENT OPEN   {e.class_name:<14} peak {e.peak_score:.2f}  id {e.id[:8]}")
        else:
            self.events.append(update)
            self._line(f"{clock(e.end_s or e.start_s)}  EVENT CLOSED {e.class_name:<14} {clock(e.start_s)}-"
                       f"{clock(e.end_s or e.start_s)} peak {e.peak_score:.2f} mean {e.mean_score:.2f}"
                       + (f" ({update.reason})" if update.reason != "scores fell" else ""))
        self._draw()

    def _display(self) -> str:
        s = self.latest
        state = s.state if s is not None else "connecting"
        score = f"{self.recent[-1]:.2f}" if self.recent else "-"
        lag = f"lag {s.lag_s:.2f}s" if s is not None and s.lag_s is not None else "lag -"
        dropped = s.snippets_dropped if s is not None else 0
        event = f" ● {s.open_event.class_name}" if s is not None and s.open_event is not None else ""
        return f"[{state}] {clock(self.last_time)} {sparkline(self.recent):<{SPARK_WIDTH}} {score}{event}  {lag} " \
               f"dropped {dropped}"

    def _draw(self) -> None:
        if self.tty:
            self.out.write("\r\x1b[K" + self._display())
            self.out.flush()
            self.drawn = True
        elif self.recent and time.monotonic() - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = time.monotonic()
            self._line(self._display())

    def summary(self, final: StreamStatus, wall_s: float) -> str:
        lines = [f"{final.state}{': ' + final.reason if final.reason else ''}; {final.snippets_scored} snippets "
                 f"scored, {final.snippets_dropped} dropped ({100 * final.drop_rate:.1f}%) in {wall_s:.1f} s; max "
                 f"score {self.max_score:.3f}; {len(self.events)} event(s)"
                 + (f"; {final.reconnects} reconnection(s)" if final.reconnects else "")]
        lines += [f"  {u.event.class_name:<14} {clock(u.event.start_s)}-{clock(u.event.end_s or 0.0)}  peak "
                  f"{u.event.peak_score:.2f}" for u in self.events]
        return "\n".join(lines)


@app.command("watch")
def watch(
    source: Annotated[str, typer.Argument(help="A stream URL (rtsp://, rtsps://, an http(s):// HLS playlist "
                                               ".m3u8, udp://, rtp://, srt://, tcp://) or a video file.")],
    bundle: Annotated[Path | None, typer.Option("--bundle", "-b", help="Model bundle; default VAD_BUNDLE.")] = None,
    threshold: Annotated[float | None, typer.Option(
        help=f"Event threshold on the anomaly score ({setting_default('threshold')}).")] = None,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="Append one JSON line per score, event and change of "
                                                               "state to this file.")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Play a file at its own pace, like a live source "
                                                              "(snippets are dropped if scoring falls behind).")
                        ] = False,
    window: Annotated[int | None, typer.Option(
        help=f"Snippets of context per score ({setting_default('stream_window')}).")] = None,
    device: Annotated[str | None, typer.Option(help=f"cpu, cuda, cuda:N or auto ({setting_default('device')}).")
                      ] = None,
    probe: Annotated[bool | None, typer.Option(
        "--probe/--no-probe", help="With VAD_CLIP_PRECISION auto on a CPU, score at the CLIP precision a probe "
                                   "measures fastest on this CPU within a cosine of 0.995 to fp32 (fp32, int8, bf16;"
                                   f" cached; {setting_default('stream_precision_probe')}); --no-probe: "
                                   "VAD_CLIP_PRECISION's.")] = None,
    skip_frames: Annotated[str | None, typer.Option(
        "--skip-frames", help="nonref: do not decode the frames no other frame refers to unless a snippet keeps "
                              f"them (the same kept frames); none: decode all "
                              f"({setting_default('stream_skip_frames')}).")] = None,
    decode_threads: Annotated[int | None, typer.Option(
        help=f"Decoder threads; 0: FFmpeg's default ({setting_default('stream_decode_threads')}).")] = None,
) -> None:
    """Watch one camera live: score each 16-frame snippet as it arrives, print events as they open and close.

    Runs the service's online scorer in-process. Ctrl-C stops and prints a summary. Online scores use only the
    past (the last --window snippets), so they differ a little from `vad analyze`'s (docs/streams.md).
    """
    offline_hub()
    from vad.cli.commands.video import _errors, _settings
    from vad.net.redact import redact_url

    settings = _settings(bundle=bundle, threshold=threshold, stream_window=window, device=device,
                         stream_precision_probe=probe, stream_skip_frames=skip_frames,
                         stream_decode_threads=decode_threads)
    from workers.encode.precision_probe import stream_encoder
    from workers.stream import StreamEngine, StreamRunner

    try:
        engine = StreamEngine(settings=settings)
        engine.encoder, choice = stream_encoder(engine.encoder, settings)
    except _errors() as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"watching {redact_url(source)} with {settings.bundle}"
               + (" [SYNTHETIC DEMO MODEL]" if engine.demo else "") + f"; CLIP {choice.summary()}; Ctrl-C stops",
               err=True)
    handle = jsonl.open("a", encoding="utf-8") if jsonl is not None else None
    sink = TerminalSink(sys.stdout, engine.class_names, tty=sys.stdout.isatty(), jsonl=handle,
                        threshold=settings.threshold)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, _stopper(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        final = StreamRunner(source, engine, sink, settings, realtime=realtime).run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if handle is not None:
            handle.close()
    sink._line(sink.summary(final, time.monotonic() - started))
    if final.state == "failed":
        raise fail(final.reason or "the stream failed")


def _stopper(stop: threading.Event) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: stop waiting for a clean end
            raise KeyboardInterrupt
        stop.set()

    return handler
