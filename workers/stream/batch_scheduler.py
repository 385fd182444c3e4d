"""Batching across streams: one scheduler per engine (per worker process) encodes the kept frames of all its streams
in one CLIP forward and scores all their windows in one DSANet forward.

Each stream's runner thread hands its snippet over with :meth:`BatchScheduler.score` and waits for the score; the
scheduler's thread takes the waiting snippets oldest first, up to ``max_batch`` of them, once

* every attached stream has a snippet waiting, or the batch is full, or
* the oldest has waited ``wait_s`` (the latency budget; under load the oldest has waited longer already, so a
  batch goes as soon as the previous forward ends).

Fairness: a stream has at most one snippet waiting (its runner waits for the score), and batches are taken oldest
first, so with ``N`` streams and batches of ``B`` a snippet waits at most ``ceil(N / B)`` forwards: a fast stream
cannot starve slow ones. A stream whose model falls behind still drops snippets in its own source (newest wins,
counted per stream), as without batching.

Results equal unbatched scoring: the image tower sees each frame preprocessed alone, and each window is its own
zero-padded chunk with its valid length (:func:`model.inference.score_sequences`), so other streams' rows never
enter it. A frame whose scene has not changed (:class:`~workers.encode.scene_change.ChangeGate`) comes with its
stream's last feature and joins the DSANet forward only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from workers.stream.online import OnlineScorer, SnippetScore, StreamEngine


@dataclass(frozen=True)
class SnippetRequest:
    """What a stream hands over for one snippet: its frame (or the feature of its unchanged scene) and its times.

    Attributes:
        scorer: The stream's window.
        image: uint8 RGB ``[H, W, 3]`` to encode; ``None`` when ``feature`` is given.
        feature: ``[D]`` feature to reuse (the scene did not change); ``None`` to encode ``image``.
        index: Snippet number.
        start_s: Stream time of its start.
        end_s: Stream time of its end.
        arrived_at: Unix time its frame arrived.
        start_at: ``start_s`` as a Unix time.
    """

    scorer: OnlineScorer
    image: np.ndarray | None
    feature: np.ndarray | None
    index: int
    start_s: float
    end_s: float
    arrived_at: float | None = None
    start_at: float | None = None


@dataclass
class _Pending:
    request: SnippetRequest
    submitted: float
    done: threading.Event = field(default_factory=threading.Event)
    feature: np.ndarray | None = None
    score: SnippetScore | None = None
    error: BaseException | None = None
    batches_waited: int = 0


@dataclass
class SchedulerStats:
    """What the scheduler did: forwards run, snippets scored, frames encoded, the largest batch."""

    batches: int = 0
    snippets: int = 0
    encoded: int = 0
    largest: int = 0
    most_batches_waited: int = 0


class BatchScheduler:
    """Collects the snippets of a process's streams and scores them in batches, on its own thread.

    Args:
        engine: The shared models.
        max_batch: Snippets per batch at most (the device's batch).
        wait_s: Longest the oldest waiting snippet waits for others before its batch goes.
    """

    def __init__(self, engine: StreamEngine, max_batch: int, wait_s: float) -> None:
        self.engine = engine
        self.max_batch = max(1, max_batch)
        self.wait_s = wait_s
        self.stats = SchedulerStats()
        self._pending: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._attached = 0
        self._thread: threading.Thread | None = None

    def attach(self) -> None:
        """A stream starts using the scheduler (counted, so that a batch need not wait once all have a snippet)."""
        with self._cond:
            self._attached += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="vad-stream-batches", daemon=True)
                self._thread.start()

    def detach(self) -> None:
        """A stream stops using the scheduler."""
        with self._cond:
            self._attached = max(0, self._attached - 1)
            self._cond.notify_all()

    def score(self, request: SnippetRequest) -> tuple[np.ndarray, SnippetScore]:
        """Hand a snippet over and wait for its feature and score (on the calling stream's thread).

        Raises:
            Exception: What encoding or scoring its batch raised (the stream then fails with the reason).
        """
        item = _Pending(request, time.monotonic())
        with self._cond:
            self._pending.append(item)
            self._cond.notify_all()
        item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.feature is not None and item.score is not None
        return item.feature, item.score

    def _loop(self) -> None:
        while True:
            batch = self._take()
            self._run(batch)

    def _take(self) -> list[_Pending]:
        with self._cond:
            while True:
                if self._pending:
                    now = time.monotonic()
                    deadline = self._pending[0].submitted + self.wait_s
                    if (len(self._pending) >= min(self.max_batch, max(1, self._attached)) or now >= deadline):
                        break
                    self._cond.wait(deadline - now)
                else:
                    self._cond.wait()
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            for left in self._pending:
                left.batches_waited += 1
            return batch

    def _run(self, batch: list[_Pending]) -> None:
        try:
            to_encode = [item for item in batch if item.request.feature is None]
            images = [item.request.image for item in to_encode]
            features = self.engine.encode_frames([i for i in images if i is not None])
            for item, feature in zip(to_encode, features, strict=True):
                item.feature = feature
            for item in batch:
                if item.request.feature is not None:
                    item.feature = item.request.feature
            windows = [item.request.scorer.append(item.feature) for item in batch]  # type: ignore[arg-type]
            scores = self.engine.score_windows(windows)
        except BaseException as exc:  # the whole batch failed (model error): each of its streams gets the reason
            for item in batch:
                item.error = exc
                item.done.set()
            return
        now = time.time()
        for item, result in zip(batch, scores, strict=True):
            r = item.request
            try:
                item.score = r.scorer.result(result, r.index, r.start_s, r.end_s, arrived_at=r.arrived_at,
                                             scored_at=now, start_at=r.start_at)
            except ValueError as exc:  # this stream's snippet only
                item.error = exc
            item.done.set()
        s = self.stats
        s.batches += 1
        s.snippets += len(batch)
        s.encoded += len(to_encode)
        s.largest = max(s.largest, len(batch))
        s.most_batches_waited = max([s.most_batches_waited, *[item.batches_waited for item in batch]])
