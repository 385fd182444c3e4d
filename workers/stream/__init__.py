"""Live streams: online scoring of a camera's snippets as they arrive, events as they happen.

:class:`~workers.stream.live_source.LiveSource` reads a URL or file in real time (bounded queue, drops counted,
reconnection with backoff); :class:`~workers.stream.online.StreamEngine` holds the models, loaded once for
any number of streams; :class:`~workers.stream.online.OnlineScorer` runs DSANet over each stream's sliding
window; :class:`~workers.stream.event_tracker.EventTracker` opens and closes events; :class:`~workers.stream.runner.
StreamRunner` ties them together and reports to a :class:`~workers.stream.runner.StreamSink`. No HTTP or Redis
here: the service and ``vad watch`` provide the sinks.
"""

from workers.stream.event_tracker import EventTracker, EventUpdate, LiveEvent
from workers.stream.live_source import LiveSource, SourceChange, SourceFrame, StreamClock
from workers.stream.online import OnlineScorer, SnippetScore, StreamEngine
from workers.stream.runner import StreamRunner, StreamSink, StreamStatus

__all__ = ["EventTracker", "EventUpdate", "LiveEvent", "LiveSource", "OnlineScorer", "SnippetScore", "SourceChange",
           "SourceFrame", "StreamClock", "StreamEngine", "StreamRunner", "StreamSink", "StreamStatus"]
