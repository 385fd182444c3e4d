"""Live streams end to end with real processes: a real UDP MPEG-TS source (ffmpeg publishing 3 s of black and 3 s of
white, over and over, at real-time pace), Redis, two `vad worker` supervisors and uvicorn.

The model is a reduced-width random one (the demo model takes minutes to build on a loaded machine): with a window
of one snippet its score depends on the snippet alone, and the test puts the stream's threshold between its scores
of black and of white, so an event opens with each white stretch and closes with the next black one.

What the issue asks of the service, each asserted here:

* SIGKILL of the worker process that owns the stream: another worker owns it within the lease TTL + 5 s, no
  event (entry, open or close, webhook) is delivered twice, and the new owner's events and timeline continue the
  first owner's clock (the time no one owned it shows as a gap) and snippet numbers;
* ``POST /v1/streams/{id}/stop`` stops the worker within a second and leaves only the documented retention;
  DELETE then removes every key of the stream and every route of it answers 404;
* the URL's credentials never appear in an answer, a log line, the metrics;
* the web page's Live view, in headless Chromium, shows the stream, its scores and its events opening and closing.

Asserted once, at the level that proves it, elsewhere: refused stream URLs answer 422 without the credentials
(tests/integration/service/test_streams_api.py, the API on a real Redis; test_streams_serve_demo.py through
`vad serve`); SSE resume after ``Last-Event-ID`` (the same API test, with events it writes itself;
test_streams_serve_demo.py with a real camera)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Service, running_service
from vad.callbacks import SIGNATURE_HEADER, verify_signature
from vad.cli.stack import free_port, wait_for
from vad.keys import Keys

pytestmark = [pytest.mark.slow, pytest.mark.timing, pytest.mark.timeout(600)]

SECRET_WORD = "hunter2"  # the camera's password: must never be seen outside the worker that connects
LEASE_TTL_S = 4
CALLBACK_SECRET = "stream-callback-secret-0123"


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every delivery (body, signature valid)."""

    server: ThreadingHTTPServer
    deliveries: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            signed = verify_signature(CALLBACK_SECRET, self.headers.get(SIGNATURE_HEADER, ""), body)
            received.append({"signed": signed, **json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server, received)
    finally:
        server.shutdown()


@dataclass
class Stack:
    service: Service
    second: subprocess.Popen
    root: Path
    source_port: int
    threshold: float

    @property
    def logs(self) -> list[Path]:
        return [self.root / "api.log", self.root / "worker.log", self.root / "worker2.log"]


def black_white_threshold(bundle: object) -> float:
    """Halfway between the model's scores of a black and of a white snippet (window of one snippet)."""
    import numpy as np

    from workers.settings import WorkerSettings
    from workers.stream.online import OnlineScorer, StreamEngine

    engine = StreamEngine(bundle, WorkerSettings(device="cpu"))  # type: ignore[arg-type]
    scores = [OnlineScorer(engine, 1).push(engine.encode(np.full((1, 72, 96, 3), v, np.uint8))[0], 0, 0, 0).score
              for v in (0, 255)]
    if abs(scores[1] - scores[0]) < 0.01:
        pytest.fail(f"the test model scores black and white alike ({scores}): pick another seed")
    return (scores[0] + scores[1]) / 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    from tests.conftest import tiny_bundle

    if not _have("ffmpeg"):
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    root = tmp_path_factory.mktemp("streams")
    bundle = tiny_bundle("ucf", seed=2)
    threshold = black_white_threshold(bundle)
    port = free_port(socket.SOCK_DGRAM)
    publisher = subprocess.Popen(  # real time (-re), forever: a camera that never stops
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
         "color=c=black:s=96x72:r=50,format=yuv420p,geq=lum='if(lt(mod(T\\,6)\\,3)\\,16\\,235)':cb=128:cr=128",
         "-c:v", "mpeg2video", "-g", "25", "-q:v", "4", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdout=subprocess.DEVNULL, stderr=(root / "ffmpeg.log").open("w"))
    env = {"VAD_STREAM_ALLOWLIST": "127.0.0.1/32", "VAD_STREAMS_PER_WORKER": "1",
           "VAD_STREAM_LEASE_TTL_S": str(LEASE_TTL_S), "VAD_STREAM_WINDOW": "1", "VAD_STREAM_HYSTERESIS": "0",
           "VAD_STREAM_MERGE_GAP_S": "0.5",
           "VAD_CALLBACK_ALLOWLIST": "127.0.0.1", "VAD_CALLBACK_ALLOW_PRIVATE": "true",
           "VAD_CALLBACK_SECRET": CALLBACK_SECRET, "OMP_NUM_THREADS": "1"}
    try:
        with running_service(root, bundle, env=env) as service:
            second = service.start_worker(root / "worker2.log")  # stopped with the stack
            wait_for(lambda: len(service.worker_pids()) == 2, 120, "two worker processes", second)
            yield Stack(service, second, root, port, threshold)
    finally:
        publisher.send_signal(signal.SIGTERM)
        try:
            publisher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            publisher.kill()


def _have(binary: str) -> bool:
    import shutil

    return shutil.which(binary) is not None


def api(stack: Stack, method: str, path: str, **kwargs: object) -> httpx.Response:
    response = httpx.request(method, f"{stack.service.url}{path}", timeout=15, **kwargs)  # type: ignore[arg-type]
    assert SECRET_WORD not in response.text, f"{method} {path} leaks the password: {response.text[:500]}"
    return response


def stream_url(stack: Stack) -> str:
    return f"udp://cam:{SECRET_WORD}@127.0.0.1:{stack.source_port}?token=s3cret{SECRET_WORD}"


def events_of(stack: Stack, stream_id: str) -> list[dict]:
    return api(stack, "GET", f"/v1/streams/{stream_id}/events", params={"limit": 10000}).json()["events"]


def wait_events(stack: Stack, stream_id: str, closed: int, timeout_s: float) -> list[dict]:
    found: list[dict] = []

    def enough() -> bool:
        nonlocal found
        found = events_of(stack, stream_id)
        return sum(1 for e in found if e["kind"] == "close") >= closed

    wait_for(enough, timeout_s, f"{closed} closed events of stream {stream_id}")
    return found


def test_a_live_stream_takeover_and_delete(stack: Stack, receiver: Receiver) -> None:
    service, keys = stack.service, Keys(stack.service.env["VAD_KEY_PREFIX"])
    created = api(stack, "POST", "/v1/streams", json={"url": stream_url(stack), "name": "loop",
                                                      "threshold": stack.threshold, "callback_url": receiver.url})
    assert created.status_code == 201, created.text
    stream_id = created.json()["id"]
    wait_for(lambda: api(stack, "GET", f"/v1/streams/{stream_id}").json()["status"] == "live", 60, "the stream live")
    live = api(stack, "GET", f"/v1/streams/{stream_id}").json()
    assert live["source"] == {"fps": 50.0, "width": 96, "height": 72} and live["url"].startswith("udp://***@")
    assert live["threshold"] == stack.threshold

    # 1. SIGKILL the worker process that owns the stream (once it has scored a few snippets, so that there is a
    # clock to continue): another one owns it within TTL + 5 s
    wait_for(lambda: service.conn.xlen(keys.stream_timeline(stream_id)) >= 10, 30, "the first owner scoring")
    owner = json.loads(service.conn.hget(keys.stream(stream_id), "worker"))
    token = int(service.conn.get(keys.stream_fence(stream_id)))
    pids = {w.name: w.pid for w in _workers(service)}
    os.kill(pids[owner], signal.SIGKILL)
    killed = time.monotonic()

    def taken_over() -> bool:
        worker = service.conn.hget(keys.stream(stream_id), "worker")
        return worker is not None and json.loads(worker) not in (None, owner) and bool(
            service.conn.exists(keys.stream_lease(stream_id)))

    wait_for(taken_over, LEASE_TTL_S + 5, f"another worker owning the stream within {LEASE_TTL_S + 5} s")
    took_s = time.monotonic() - killed
    assert int(service.conn.get(keys.stream_fence(stream_id))) > token
    print(f"taken over {took_s:.1f} s after SIGKILL (lease TTL {LEASE_TTL_S} s)")
    before = sum(1 for e in events_of(stack, stream_id) if e["kind"] == "close")
    after_kill = wait_events(stack, stream_id, closed=before + 2, timeout_s=60)  # events go on under the new owner

    entry_ids = [e["id"] for e in after_kill]
    assert len(entry_ids) == len(set(entry_ids))
    kinds = Counter((e["event"]["id"], e["kind"]) for e in after_kill)
    assert max(kinds.values()) == 1, f"an event opened or closed twice: {kinds.most_common(3)}"
    opened = {e["event"]["id"] for e in after_kill if e["kind"] == "open"}
    assert {e["event"]["id"] for e in after_kill if e["kind"] == "close"} <= opened
    assert_one_clock(stack, stream_id, token, after_kill)

    # 1b. the event history has every event recorded so far, newest first; those their owner closed by the rule
    # have their features saved (one closed by the takeover has none: its owner was dead)
    recorded = events_of(stack, stream_id)
    history = api(stack, "GET", "/v1/events", params={"stream_id": stream_id, "limit": 200}).json()["events"]
    assert {e["event"]["id"] for e in recorded} <= {e["id"] for e in history}
    assert all(e["source_name"] == "loop" for e in history)
    assert [e["opened_at"] for e in history] == sorted((e["opened_at"] for e in history), reverse=True)
    by_rule = {e["event"]["id"] for e in recorded if e["kind"] == "close" and e["reason"] == "scores fell"}
    saved = Path(service.env["VAD_STORAGE_DIR"]) / ".features"
    assert by_rule and all((saved / f"{event_id}.npy").is_file() for event_id in by_rule)

    # 2. stop: stopped at once, the worker stops within a second, only the retention is left
    deleted = time.monotonic()
    stop = api(stack, "POST", f"/v1/streams/{stream_id}/stop")
    assert stop.status_code == 200 and stop.json()["status"] == "stopped"
    assert api(stack, "GET", f"/v1/streams/{stream_id}").json()["status"] == "stopped"
    wait_for(lambda: any(f"stream {stream_id}: stopped here" in log.read_text() for log in stack.logs[1:]), 5,
             "the owner's log saying it stopped")
    stopped_s = time.monotonic() - deleted
    print(f"the owner stopped {stopped_s:.2f} s after the stop (log line seen, polled every 0.1 s)")
    assert stopped_s < 1.5, f"the worker stopped {stopped_s:.2f} s after the stop"  # 1 s, plus the polling and load
    length = service.conn.xlen(keys.stream_timeline(stream_id))
    time.sleep(1.5)
    assert service.conn.xlen(keys.stream_timeline(stream_id)) == length  # nothing scored after the stop
    left = {k.decode() for k in service.conn.scan_iter(f"{keys.prefix}stream:{stream_id}*")}
    assert left == {keys.stream(stream_id), keys.stream_fence(stream_id), keys.stream_timeline(stream_id),
                    keys.stream_events(stream_id)}
    retention = int(os.environ.get("VAD_STREAM_RETENTION_S", 7 * 24 * 3600))
    assert all(0 < service.conn.ttl(k) <= retention for k in left)
    assert service.conn.zscore(keys.streams_active, stream_id) is None
    wait_for(lambda: not any(stream_id in json.loads(v)["running"]
                             for v in service.conn.hgetall(keys.stream_workers).values()), 3 * LEASE_TTL_S + 2,
             "no worker running it (a killed one's report goes once it is stale)")

    # 3. webhooks: every event entry delivered once, signed
    final = events_of(stack, stream_id)
    wait_for(lambda: len(receiver.deliveries) >= len(final), 30, "a webhook per event entry")
    delivered = Counter(d["event_id"] for d in receiver.deliveries if d["stream_id"] == stream_id)
    assert set(delivered) == {e["id"] for e in final} and max(delivered.values()) == 1
    assert all(d["signed"] for d in receiver.deliveries)

    # 3b. DELETE: nothing of the stream is left, every route of it answers 404, a second DELETE too
    assert api(stack, "DELETE", f"/v1/streams/{stream_id}").status_code == 204
    for method, path in (("GET", ""), ("GET", "/events"), ("GET", "/timeline"), ("POST", "/stop"), ("DELETE", "")):
        gone = api(stack, method, f"/v1/streams/{stream_id}{path}")
        assert gone.status_code == 404 and gone.json()["code"] == "stream_not_found", (method, path, gone.text)
    assert list(service.conn.scan_iter(f"{keys.prefix}stream:{stream_id}*")) == []
    # its events left the history, with their saved features
    assert api(stack, "GET", "/v1/events", params={"stream_id": stream_id}).json()["events"] == []
    assert not any((saved / f"{event_id}.npy").exists() for event_id in by_rule)

    # 4. the password never appeared in a log line or the metrics
    metrics = api(stack, "GET", "/metrics").text
    assert "vad_stream_snippets_scored" in metrics
    for log in stack.logs:
        assert SECRET_WORD not in log.read_text(), f"{log.name} shows the password"


def assert_one_clock(stack: Stack, stream_id: str, token: int, events: list[dict]) -> None:
    """The owner after ``token`` numbered on from the first one's last snippet, on the first one's clock."""
    conn, keys = stack.service.conn, Keys(stack.service.env["VAD_KEY_PREFIX"])
    points = [{k.decode(): v.decode() for k, v in fields.items()}
              for _, fields in conn.xrange(keys.stream_timeline(stream_id))]
    first = [p for p in points if int(p["token"]) == token]
    later = [p for p in points if int(p["token"]) > token]
    assert first and later, f"{len(first)} points of the first owner, {len(later)} of the next"
    indices = [int(p["index"]) for p in points]
    assert indices == sorted(set(indices)), "snippet numbers went back"
    last, resumed = first[-1], later[0]
    print(f"first owner's last snippet {last['index']} at {float(last['start_s']):.2f} s; the next owner's first "
          f"{resumed['index']} at {float(resumed['start_s']):.2f} s")
    assert int(resumed["index"]) == int(last["index"]) + 1, "the new owner did not number on"
    # stream time went on as the wall clock did while no one read the stream (as across a reconnection)
    stream_gap = float(resumed["start_s"]) - float(last["start_s"])
    wall_gap = float(resumed["at"]) - float(last["at"])
    assert stream_gap == pytest.approx(wall_gap, abs=1.0) and stream_gap >= LEASE_TTL_S - 1.0
    origin = json.loads(conn.hget(keys.stream(stream_id), "clock_origin_at"))
    for entry in events:  # every event on the one clock, with its media times as Unix times
        event = entry["event"]
        assert event["start_at"] == pytest.approx(origin + event["start_s"], abs=1e-3), entry
        if entry["kind"] == "close":
            assert event["end_at"] == pytest.approx(origin + event["end_s"], abs=1e-3), entry
    by_new_owner = {entry_id.decode() for entry_id, fields in conn.xrange(keys.stream_events(stream_id))
                    if int(fields[b"token"]) > token}
    new_events = [e for e in events if e["kind"] == "open" and e["id"] in by_new_owner]
    assert new_events, "no event opened under the new owner"
    for entry in new_events:
        assert entry["event"]["start_s"] >= float(last["end_s"])
        # a wall-clock time: the event opened about when its media was live (the clock of a connection starts at
        # its first decoded frame, after FFmpeg's probing: start_at may be a fraction of a second late)
        assert abs(entry["at"] - entry["event"]["start_at"]) <= 3.0


def _workers(service: Service) -> list:
    from rq import Queue, Worker

    return Worker.all(queue=Queue(service.queue, connection=service.conn))


def test_the_live_page_shows_the_stream_its_scores_and_its_events_as_they_open_and_close(stack: Stack,
                                                                                         browser) -> None:
    """Headless Chromium on the Live view: add the real stream through the form, see it live, its chart fill
    with scores and an event shaded while open, then closed; the password is nowhere on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{stack.service.url}/#live")
    assert browser.find_element(By.ID, "live-view").is_displayed()
    assert not browser.find_element(By.ID, "upload-view").is_displayed()
    browser.find_element(By.ID, "stream-url").send_keys(stream_url(stack))
    browser.find_element(By.ID, "stream-name").send_keys("page cam")
    browser.find_element(By.ID, "stream-threshold").send_keys(f"{stack.threshold:.6f}")
    browser.find_element(By.ID, "stream-add").click()
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)

    def card_status(driver) -> str | None:
        return driver.execute_script(
            "const c = [...document.querySelectorAll('article.stream')].find(a => "
            "a.querySelector('.stream-name').textContent === 'page cam'); return c ? c.dataset.status : null;")

    wait.until(lambda d: card_status(d) == "live")
    assert browser.find_element(By.ID, "stream-url").get_attribute("value") == ""
    points = "return Number(document.querySelector('article.stream[data-status=live] polyline.score').dataset.count)"
    wait.until(lambda d: d.execute_script(points) >= 10)  # scores arrive by SSE, about three a second
    opened = wait.until(lambda d: d.execute_script(
        "const r = document.querySelector('article.stream[data-status=live] rect.event[data-open=true]');"
        "return r ? r.dataset.eventId : null;"))
    wait.until(lambda d: d.execute_script(
        f"const r = document.querySelector('rect.event[data-event-id=\"{opened}\"]');"
        "return r !== null && r.dataset.open === 'false';"))  # the same event, now closed, still shaded
    assert SECRET_WORD not in browser.page_source
    stream_id = browser.execute_script("return document.querySelector('article.stream[data-status=live]').dataset.id")
    events = [e for e in events_of(stack, stream_id) if e["event"]["id"] == opened]
    assert [e["kind"] for e in events] == ["open", "close"]  # the page drew what the API recorded
    browser.find_element(By.CSS_SELECTOR, f"article.stream[data-id='{stream_id}'] .stream-stop").click()
    wait.until(lambda d: card_status(d) == "stopped")
    assert api(stack, "GET", f"/v1/streams/{stream_id}").json()["status"] == "stopped"
