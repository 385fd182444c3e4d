"""The event history with the real producers: a worker's job and a stream owner index their events and save their
CLIP features; verdicts on them export as a training folder that ``vad train`` trains on.

* ``analyze_job`` on a real video with a tiny model: the job's events are in the history (source job, its file
  name, the result time) and its ``[n, D]`` features are in the storage;
* :class:`~workers.runtime.streams.StreamService` with the real runner on a live UDP source (black, then white): each
  event is in the history when it opens and again, closed, when it closes; its features window is saved;
* ``vad export-reviews`` then ``vad train --stop-after 1`` on what it wrote.
"""

from __future__ import annotations

import io
import json
import secrets
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from service.events import EventIndex
from tests.conftest import tiny_bundle
from tests.integration.test_mqtt import black_white  # noqa: F401 - the live source's file (a fixture)
from tests.support.publish import Publisher
from vad.cli.stack import free_port
from vad.events import VerdictBody
from vad.jobstate import JobOptions, JobRecord
from vad.keys import Keys
from vad.storage import LocalStorage
from vad.storage.features import FeatureStore
from workers.runtime.context import JobContext
from workers.synthetic import make_video

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def run_job(ctx: JobContext, video: Path, name: str) -> str:
    from workers.runtime.jobs import analyze_job

    job_id = f"job-{secrets.token_hex(4)}"
    record = JobRecord(id=job_id, owner="k", filename=name, video_ref=str(video),
                       options=JobOptions(threshold=0.0))  # every snippet is above: one event over the video
    ctx.redis.hset(ctx.keys.job(job_id), mapping=record.to_redis())
    assert analyze_job(job_id)["events"] == 1
    return job_id


def stream_event(live_redis: Any, prefix: str, storage: LocalStorage, source: Path, tmp_path: Path) -> str:
    """Run a live stream until one event closed; its id."""
    from service.settings import ServiceSettings
    from service.streams import StreamStore
    from tests.e2e.test_streams_e2e import black_white_threshold
    from vad.streams import StreamRecord
    from workers.runtime.streams import StreamService
    from workers.settings import WorkerSettings
    from workers.stream.online import StreamEngine

    settings = WorkerSettings(key_prefix=prefix, stream_lease_ttl_s=4, stream_allowlist=["127.0.0.1/32"],
                              device="cpu", stream_window=1, stream_merge_gap_s=0.5, stream_read_timeout_s=2.0,
                              storage_dir=storage.root)  # the event's evidence goes beside its features
    bundle = tiny_bundle("ucf", seed=2)
    engine = StreamEngine(bundle, settings)
    index = EventIndex(live_redis, Keys(prefix))
    store = StreamStore(live_redis, ServiceSettings(key_prefix=prefix, stream_lease_ttl_s=4))
    worker = StreamService(SimpleNamespace(settings=settings, redis=live_redis), "w1", capacity=1,
                           engine_factory=lambda model: engine, features=FeatureStore(storage)).start()
    udp = free_port(socket.SOCK_DGRAM)
    record = store.create(StreamRecord(id=f"cam-{secrets.token_hex(3)}", owner="k", name="Front door",
                                       url=f"udp://127.0.0.1:{udp}", display_url=f"udp://127.0.0.1:{udp}",
                                       threshold=black_white_threshold(bundle)))
    publisher = Publisher(source, f"udp://127.0.0.1:{udp}", copy=True, loop=-1, log=tmp_path / "ffmpeg.log")
    states: list[str] = []
    try:
        publisher.start()

        def seen() -> list[Any]:
            found, _ = index.page("k", source=("stream", record.id))
            states.extend(e.state for e in found if not states or states[-1] != e.state)
            return [e for e in found if e.state == "closed"]

        wait(lambda: bool(seen()), 90, "a closed stream event in the history")
    finally:
        publisher.stop()
        worker.close()
    event = seen()[-1]
    assert "open" in states  # listed while open, then closed
    assert (event.source, event.source_id, event.source_name) == ("stream", record.id, "Front door")
    assert event.end_s is not None and event.closed_at is not None and event.threshold == record.threshold
    return event.id


def test_jobs_and_streams_index_their_events_and_verdicts_export_to_vad_train(
        job_ctx: JobContext, live_redis: Any, black_white: Path, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.analyzer import Analyzer
    from workers.settings import WorkerSettings

    bundle = tiny_bundle("ucf", seed=1)
    job_ctx._analyzers["default"] = Analyzer(bundle, WorkerSettings(device="cpu", batch_size=8))
    monkeypatch.setattr(job_ctx, "model_paths", lambda: {"default": "tiny"})
    video = make_video(tmp_path / "yard.mp4", duration_s=3.0, fps=25.0, size=(96, 64)).path
    jobs = [run_job(job_ctx, video, "yard.mp4"), run_job(job_ctx, video, "gate.mp4")]
    index, features = EventIndex(live_redis, job_ctx.keys), FeatureStore(job_ctx.storage)
    listed, _ = index.page("k")
    assert [(e.source, e.source_id) for e in listed] == [("job", jobs[1]), ("job", jobs[0])]  # newest first
    result = json.loads(live_redis.get(job_ctx.keys.result(jobs[0])))
    assert listed[1].id == result["events"][0]["id"] and listed[1].source_name == "yard.mp4"
    assert listed[1].opened_at == pytest.approx(json.loads(live_redis.hget(job_ctx.keys.job(jobs[0]),
                                                                          "finished_at")))
    saved = np.load(io.BytesIO(features.get(jobs[0]) or b""))
    assert saved.dtype == np.float32 and saved.shape == (len(result["timeline"]["score"]), bundle.config.visual_width)

    live_id = stream_event(live_redis, job_ctx.keys.prefix, job_ctx.storage, black_white, tmp_path)
    window = np.load(io.BytesIO(features.get(live_id) or b""))
    assert window.ndim == 2 and window.shape[1] == bundle.config.visual_width

    for event_id, verdict in ((listed[0].id, "false_alarm"), (listed[1].id, "true_alert"), (live_id, "true_alert")):
        assert index.set_verdict(event_id, "k", VerdictBody(verdict=verdict)) is not None
    preset = tmp_path / "tiny.json"
    preset.write_text(bundle.config.to_json())
    monkeypatch.setenv("VAD_KEY_PREFIX", job_ctx.keys.prefix)
    monkeypatch.setenv("VAD_STORAGE_DIR", str(job_ctx.settings.storage_dir))
    from vad.cli import app

    runner, out = CliRunner(), tmp_path / "reviews"
    exported = runner.invoke(app, ["export-reviews", "--preset", str(preset), "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "wrote 3 reviewed events" in exported.output and "2 true alerts, 1 false alarms" in exported.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert {e["id"] for e in manifest["events"]} == {listed[0].id, listed[1].id, live_id}
    normal = bundle.config.classes[0].label
    assert {e["label"] == normal for e in manifest["events"]} == {True, False}
    trained = runner.invoke(app, ["train", "--preset", str(preset), "--features-root", str(out), "--random-clip",
                                  "--batch-size", "1", "--run-dir", str(tmp_path / "run"), "--workers", "0",
                                  "--no-progress", "--stop-after", "1"])
    assert trained.exit_code == 0, trained.output
    assert "stopped after 1 iterations" in trained.output


def test_export_reviews_refuses_a_used_folder_and_an_empty_review(live_redis: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from vad.cli import app

    monkeypatch.setenv("VAD_KEY_PREFIX", f"test-{secrets.token_hex(4)}:")
    monkeypatch.setenv("VAD_STORAGE_DIR", str(tmp_path / "uploads"))
    runner = CliRunner()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("mine")
    used = runner.invoke(app, ["export-reviews", "--preset", "demo", "-o", str(tmp_path / "used")])
    assert used.exit_code == 2 and "not an empty folder" in used.output
    empty = runner.invoke(app, ["export-reviews", "--preset", "demo", "-o", str(tmp_path / "new")])
    assert empty.exit_code == 2 and "no event has a verdict yet" in empty.output
    assert not (tmp_path / "new").exists()
