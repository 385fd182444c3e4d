"""The supervisor's maintenance survives what deleted jobs leave behind: partial records, running jobs whose RQ job
is gone; and a supervisor waiting to restart a failing worker process still stops at once."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from workers.runtime.supervisor import Supervisor, _Child
from workers.settings import WorkerSettings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def supervisor(tmp_path: Path, live_redis: redis.Redis) -> Iterator[Supervisor]:
    tag = secrets.token_hex(4)
    settings = WorkerSettings(redis_url=REDIS_URL, key_prefix=f"it-{tag}:", queue_name=f"it-{tag}",
                              storage_dir=tmp_path / "uploads")
    yield Supervisor(settings)
    keys = [*live_redis.scan_iter(f"it-{tag}:*"), *live_redis.scan_iter(f"*it-{tag}*")]
    if keys:
        live_redis.delete(*keys)


def test_sweep_treats_a_partial_record_as_gone(supervisor: Supervisor, caplog: pytest.LogCaptureFixture) -> None:
    folder = supervisor.settings.storage_dir / "job1"
    folder.mkdir(parents=True)
    (folder / "video").write_bytes(b"x")
    old = time.time() - 2 * 3600
    os.utime(folder, (old, old))
    supervisor.conn.hset(supervisor.keys.job("job1"), mapping={"stage": json.dumps("encoding"),
                                                              "status": json.dumps("canceled")})
    supervisor.reap()
    assert not folder.exists()  # an unreadable record is no record: its old upload goes
    assert "job1" in caplog.text


def test_reap_survives_a_running_job_deleted_under_it(supervisor: Supervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"{supervisor.prefix}-0-1"
    running = SimpleNamespace(name=name, get_current_job_id=lambda: "deleted-job")  # RQ's job deleted by the API
    monkeypatch.setattr("workers.runtime.supervisor.Worker.all", lambda queue: [running])
    killed: list[bool] = []
    process = SimpleNamespace(kill=lambda: killed.append(True), poll=lambda: None, pid=0)
    supervisor.children[0] = _Child(name, process)  # type: ignore[arg-type]
    supervisor.reap()
    assert not killed


def test_sweep_removes_saved_features_whose_job_or_event_is_gone(supervisor: Supervisor) -> None:
    from vad.storage.features import FEATURES_DIR, FeatureStore

    features = FeatureStore(supervisor.storage)
    for name in ("job-alive", "event-alive", "job-gone", "event-gone", "fresh"):
        features.put(name, b"npy")
    old = time.time() - 2 * 3600
    for name in ("job-alive", "event-alive", "job-gone", "event-gone"):
        os.utime(supervisor.settings.storage_dir / FEATURES_DIR / f"{name}.npy", (old, old))
    supervisor.conn.hset(supervisor.keys.job("job-alive"), "status", json.dumps("finished"))
    supervisor.conn.hset(supervisor.keys.event("event-alive"), "state", json.dumps("closed"))
    assert [u.job_id for u in supervisor.storage.uploads()] == []  # the features are no upload
    supervisor.sweep_uploads()
    assert sorted(name for name, _ in features.names()) == ["event-alive", "fresh", "job-alive"]


def test_reap_sweeps_evidence_past_its_retention_and_leaves_the_rest(supervisor: Supervisor, tmp_path: Path) -> None:
    import uuid

    from vad.evidence import evidence_key

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 100)
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    for event_id in (old, new):
        supervisor.storage.put_file(evidence_key(event_id, "clip.mp4"), clip, "video/mp4")
    when = time.time() - supervisor.settings.evidence_retention_s - 60
    os.utime(supervisor.settings.storage_dir / evidence_key(old, "clip.mp4"), (when, when))
    hours_ago = time.time() - 2 * 3600  # an old folder without a job record: what the upload sweep deletes
    os.utime(supervisor.settings.storage_dir / "evidence", (hours_ago, hours_ago))
    supervisor.reap()
    assert supervisor.storage.object_size(evidence_key(old, "clip.mp4")) is None
    assert supervisor.storage.object_size(evidence_key(new, "clip.mp4")) == 100
    assert (supervisor.settings.storage_dir / "evidence").is_dir()  # the upload sweep leaves the evidence folder


def test_a_stop_during_a_restart_backoff_is_prompt(supervisor: Supervisor) -> None:
    """A worker process that keeps failing is restarted after a backoff of up to 30 s, waited out by the loop: SIGTERM
    meanwhile stops the supervisor within a turn of it (a blocking sleep used to hold `vad worker` up to 30 s)."""
    spawned: list[int] = []

    def spawn(slot: int, failures: int = 0) -> None:  # a process that fails at once, after six failures already
        spawned.append(max(failures, 6))
        supervisor.children[slot] = _Child(f"failing-{slot}", subprocess.Popen([sys.executable, "-c", "exit(1)"]),
                                           failures=max(failures, 6))

    supervisor._spawn = spawn  # type: ignore[method-assign]
    supervisor.concurrency, supervisor.reap_interval = 1, 3600.0
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    timer.start()
    try:
        code = supervisor.run()
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    assert code == 0 and time.monotonic() - started < 5
    assert spawned == [6] and supervisor.restarts[0][1] == 7  # the restart was 30 s away, and never happened
