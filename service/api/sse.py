"""Server-Sent Events of a stream's events (and, when asked, its scores) from Redis streams.

Each event goes out with ``id:`` = its Redis stream entry id. A client that reconnects sends the last id it got as
``Last-Event-ID``; ``XREAD`` from that id is exclusive, so it gets every later entry once: nothing lost (within the
retention) and nothing repeated. Scores go out without an ``id:`` (the last event id is what resumes), from the
moment the client connects. A comment every :data:`KEEPALIVE_S` keeps proxies from closing an idle connection;
the response ends once the stream has stopped or failed and its last event was sent, or when the server is asked to
stop (:func:`ending_on_signals`): then with a last ``retry:`` hint, and the client resumes from its last id on
whichever server answers next.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request

from service.streams import Entry, event_body, score_body
from vad.keys import Keys
from vad.streams import StreamRecord

KEEPALIVE_S = 15.0
BLOCK_MS = 1000  # how long one XREAD waits: also how soon a stop or a gone client is noticed
RETRY_MS = 2000  # what an EventSource waits before reconnecting


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def ending_on_signals(state: Any) -> Iterator[None]:
    """While open, ``state.closing`` turns true as soon as the process gets SIGINT or SIGTERM.

    uvicorn (like most ASGI servers) answers a stop signal by waiting for every open response to end before it shuts
    the app down, and an event stream does not end by itself: one open reader would hold the shutdown until the
    server is killed. The event streams end once ``state.closing`` is set. The server's own handlers are chained,
    not replaced, and are put back on exit. Signals can be caught only in the main thread; elsewhere (a test
    client's thread) nothing is installed.
    """
    state.closing = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(sig: int, frame: FrameType | None) -> None:
        state.closing = True
        chained = previous[sig]
        if callable(chained):
            chained(sig, frame)
        elif chained == signal.SIG_DFL:  # what the signal would have done without us
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, handler)
    try:
        yield
    finally:
        for number, chained in previous.items():
            if signal.getsignal(number) is handler:
                signal.signal(number, chained)


def format_message(data: dict[str, Any], event: str, entry_id: str | None = None) -> str:
    """One SSE message (``data`` as one line of JSON)."""
    head = f"id: {entry_id}\n" if entry_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def async_redis(request: Request) -> aioredis.Redis:
    """The app's asyncio Redis client for long reads (made on first use, in the server's event loop)."""
    state = request.app.state
    client: aioredis.Redis | None = getattr(state, "aredis", None)
    if client is None:
        settings = state.settings
        client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=BLOCK_MS / 1000 + settings.redis_timeout_s,
                                         socket_connect_timeout=settings.redis_timeout_s)
        state.aredis = client
    return client


async def _ended(conn: aioredis.Redis, keys: Keys, stream_id: str) -> bool:
    record = StreamRecord.read(stream_id, await conn.hgetall(keys.stream(stream_id)))
    return record is None or record.status.terminal


async def event_stream(request: Request, keys: Keys, stream_id: str, after: str,
                       scores: bool) -> AsyncIterator[str]:
    """The SSE body: events after ``after`` (exclusive), then live ones, with scores when ``scores``."""
    conn = async_redis(request)
    events_key, timeline_key = keys.stream_events(stream_id), keys.stream_timeline(stream_id)
    cursors = {events_key: after}
    if scores:
        newest = await conn.xrevrange(timeline_key, count=1)
        cursors[timeline_key] = Entry.of(newest[0]).id if newest else "0-0"
    yield f"retry: {RETRY_MS}\n\n"
    last_sent = time.monotonic()
    ending = False
    while not await request.is_disconnected():
        if getattr(request.app.state, "closing", False):  # the server is stopping: end cleanly, the client resumes
            yield f": the server is stopping; reconnect with Last-Event-ID\nretry: {RETRY_MS}\n\n"
            return
        found: Any = await conn.xread(cursors, count=200, block=None if ending else BLOCK_MS)  # type: ignore[arg-type]
        for key, entries in found or []:
            name = key.decode() if isinstance(key, bytes) else key
            for raw in entries:
                entry = Entry.of(raw)
                cursors[name] = entry.id
                if name == events_key:
                    body = event_body(entry)
                    yield format_message(body, body["kind"], entry.id)
                else:
                    yield format_message(score_body(entry), "score")
                last_sent = time.monotonic()
        if found:
            continue
        if ending:
            return
        # Nothing new: a stopped stream's last event was written with its final status (one script), so once
        # the status is final one more read without waiting gets whatever is left.
        ending = await _ended(conn, keys, stream_id)
        if not ending and time.monotonic() - last_sent >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
