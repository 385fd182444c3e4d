"""A :class:`~workers.stream.runner.StreamRunner` run in a thread, for tests that watch its sink meanwhile."""

from __future__ import annotations

import threading
from typing import Any

from tests.support.stream_sink import RecordingSink
from workers.settings import WorkerSettings
from workers.stream import StreamEngine, StreamRunner, StreamStatus


class Running:
    """A StreamRunner in a thread: started on enter; stopped and joined on exit (``final`` is its last status).

    Args:
        url: The source.
        engine: The loaded models.
        settings: The ``stream_*`` settings.
        sink: Where the runner reports.
        options: More keyword arguments of :class:`~workers.stream.runner.StreamRunner` (``transport``…).
    """

    def __init__(self, url: str, engine: StreamEngine, settings: WorkerSettings, sink: RecordingSink,
                 **options: Any) -> None:
        self.sink, self.stop = sink, threading.Event()
        self.runner = StreamRunner(url, engine, sink, settings, **options)
        self.final: StreamStatus | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.final = self.runner.run(self.stop)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
