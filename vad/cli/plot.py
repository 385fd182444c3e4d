"""A PNG timeline of one result: the anomaly score over time, the threshold, events shaded and labelled
with their class and peak score.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display; safe in worker threads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vad.schema import AnalysisResult

EVENT_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SCORE_COLOUR = "#1f77b4"
Y_MARGIN = 0.05
"""Room below 0 and above 1, so that a score of exactly 0 or 1 is drawn inside the frame, not under it."""


def event_label(class_name: str, peak_score: float) -> str:
    """The text above an event's span: its class and its peak anomaly score."""
    return f"{class_name} (peak {peak_score:.2f})"


def plot_timeline(result: AnalysisResult, path: str | Path, *, width_in: float = 12.0, dpi: int = 110) -> Path:
    """Write the timeline of ``result`` as a PNG.

    Args:
        result: An analysis result.
        path: The PNG to write (parent folders are created).
        width_in: Figure width in inches (height is a third of it).
        dpi: Resolution.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    timeline = result.timeline
    # a step curve: each snippet's score holds from its start to its end
    edges = np.array(timeline.start_s + timeline.end_s[-1:])
    scores = np.array(timeline.score + timeline.score[-1:])
    fig = Figure(figsize=(width_in, width_in / 3), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours: dict[str, str] = {}
    for event in result.events:
        colour = colours.setdefault(event.class_, EVENT_COLOURS[len(colours) % len(EVENT_COLOURS)])
        ax.axvspan(event.start_s, event.end_s, color=colour, alpha=0.2, linewidth=0)
        ax.text((event.start_s + event.end_s) / 2, 1.01, event_label(event.class_, event.peak_score), ha="center",
                va="bottom", fontsize=8, color=colour, clip_on=False, transform=ax.get_xaxis_transform())
    ax.step(edges, scores, where="post", color=SCORE_COLOUR, linewidth=1.2, label="anomaly score")
    ax.axhline(result.settings.threshold, color="grey", linestyle="--", linewidth=0.8,
               label=f"threshold {result.settings.threshold:g}")
    ax.set_xlim(0.0, max(float(edges[-1]), 1e-3))
    ax.set_ylim(-Y_MARGIN, 1.0 + Y_MARGIN)
    ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("anomaly score")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    title = f"{result.video.filename} - DSANet {result.model.preset}"
    if result.model.demo:
        title += f" [{result.model.label or 'synthetic demo model'}]"
    ax.set_title(title, fontsize=10, pad=16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
