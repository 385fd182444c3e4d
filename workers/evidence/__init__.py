"""Evidence of events (issue 19): a snapshot of the peak, a thumbnail, and a clip remuxed without re-encoding.

* :mod:`~workers.evidence.ring`: a live stream's compressed packets, bounded in seconds and bytes;
* :mod:`~workers.evidence.clip`: remuxing packets into an MP4 (and cutting a stored video);
* :mod:`~workers.evidence.snapshot`: JPEG snapshots and thumbnails;
* :mod:`~workers.evidence.store`: writing one event's evidence to the storage (keys and meta: :mod:`vad.evidence`);
* :mod:`~workers.evidence.jobs`: a job's events, from its stored video after the analysis;
* :mod:`~workers.evidence.stream`: a live stream's events, from its ring buffer once the post-roll has passed.
"""
