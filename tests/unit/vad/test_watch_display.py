"""vad watch's terminal sink: the sparkline, the clock, events and the score line on a terminal and in a file."""

from __future__ import annotations

import io
import json

from vad.cli.commands.watch import SPARK, TerminalSink, clock, sparkline
from workers.stream import EventUpdate, LiveEvent, SnippetScore, StreamStatus

CLASSES = ("normal", "fight")


def score(i: int, value: float) -> SnippetScore:
    return SnippetScore(i, i * 0.64, (i + 1) * 0.64, value, (1 - value, value), arrived_at=0.0, scored_at=0.1)


def event(kind: str) -> EventUpdate:
    e = LiveEvent("0123456789ab", "fight", 0.9, 1.28, 3.2 if kind == "close" else None, 0.95, 0.8, 2, 4)
    return EventUpdate(kind, e, "scores fell" if kind == "close" else None)  # type: ignore[arg-type]


def test_sparkline_and_clock() -> None:
    assert sparkline([0.0, 0.5, 0.999, 1.0, -1.0]) == SPARK[0] + SPARK[4] + SPARK[7] + SPARK[7] + SPARK[0]
    assert clock(65.25) == "01:05.2" and clock(3725) == "1:02:05"


def test_on_a_terminal_the_score_line_is_redrawn_and_events_get_their_own_lines() -> None:
    out, jsonl = io.StringIO(), io.StringIO()
    sink = TerminalSink(out, CLASSES, tty=True, jsonl=jsonl)
    sink.status(StreamStatus("live", None, 0.0, "rtsp://***@cam/1", fps=25.0, width=640, height=360))
    sink.score(score(0, 0.1))
    sink.score(score(1, 0.9))
    sink.event(event("open"))
    sink.event(event("close"))
    text = out.getvalue()
    assert "[live] rtsp://***@cam/1, 640x360 at 25 fps\n" in text
    assert "\r\x1b[K[live] 00:01.3 " + SPARK[0] + SPARK[7] in text
    assert "00:01.3  EVENT OPEN   fight" in text and "EVENT CLOSED fight          00:01.3-00:03.2 peak 0.95" in text
    kinds = [json.loads(line)["type"] for line in jsonl.getvalue().splitlines()]
    assert kinds == ["status", "score", "score", "event", "event"]
    assert json.loads(jsonl.getvalue().splitlines()[1])["class_probs"] == {"normal": 0.9, "fight": 0.1}


def test_in_a_file_there_are_no_control_characters_and_a_summary_lists_the_events() -> None:
    out = io.StringIO()
    sink = TerminalSink(out, CLASSES, tty=False)
    sink.status(StreamStatus("live", None, 0.0, "udp://127.0.0.1:5000"))
    for i in range(3):
        sink.score(score(i, 0.2))
    sink.event(event("close"))
    final = StreamStatus("stopped", "stopped", 0.0, "udp://127.0.0.1:5000", snippets_scored=3, snippets_dropped=1)
    summary = sink.summary(final, 2.0)
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert summary.startswith("stopped: stopped; 3 snippets scored, 1 dropped (25.0%) in 2.0 s; max score 0.200; "
                              "1 event(s)")
    assert "fight          00:01.3-00:03.2  peak 0.95" in summary
