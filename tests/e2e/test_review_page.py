"""The review page in a real headless Chromium, against a real stack (Redis, `vad worker` with the synthetic demo
model, uvicorn) fed by a real RTSP source (the rtsp-server-perl relay, FFmpeg publishing a held-out demo video whose
injected colour shift the demo model detects), with an API key, as an operator would use it.

One test, in the order an operator would go: the upload view's job history survives a reload and cancels a running
job (held at its scoring stage by the hook of ``hold/``); the live camera's event appears in the Live view with its
thumbnail and as the stream's latest snapshot; the Events view lists it with its thumbnail beside a job's events,
plays its clip with the score curve's cursor following the video (arrow keys and a click on the curve seek), records
verdicts with ``t`` and ``f`` (read back through ``GET /v1/events?verdict=…``), moves with ``j``/``k``, and ignores
the keys while the focus is in a field.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import HOLD_HOOK, Service, running_service
from tests.support.browser import chromium, full_page_screenshot
from tests.support.publish import Publisher, RtspRelay, missing_tools, reencode_for_streaming

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "review-key"
HEADERS = {"X-API-Key": KEY}


@dataclass
class Review:
    service: Service
    live: Path   # the held-out video, re-encoded for streaming
    video: Path  # the same video as generated (a job's upload)


@pytest.fixture(scope="module")
def review(demo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    missing = missing_tools("ffmpeg", "rtsp-server-perl")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run `bash scripts/ensure-stream-tools.sh`")
    from model.bundle import load_bundle
    from workers.demo.build import generate
    from workers.demo.recipe import DemoRecipe, plan_videos

    recipe = DemoRecipe()
    root = tmp_path_factory.mktemp("review")
    plans = [p for p in plan_videos(recipe, "heldout") if p.events and p.events[0].class_name == "color_shift"
             and p.events[0].start_s >= 5.0][:1]
    (video,) = generate(recipe, plans, root / "videos").values()
    live = reencode_for_streaming(video.path, root / "live.mp4", gop=25)
    env = {"VAD_STREAM_ALLOWLIST": "127.0.0.1/32", "VAD_STREAMS_PER_WORKER": "1", "VAD_API_KEYS": KEY,
           "VAD_STREAM_READ_TIMEOUT_S": "2", "VAD_STREAM_BACKOFF_MAX_S": "1", "VAD_EVIDENCE_PRE_ROLL_S": "2",
           "VAD_EVIDENCE_POST_ROLL_S": "1"}
    path = os.pathsep.join(p for p in (str(HOLD_HOOK), os.environ.get("PYTHONPATH", "")) if p)
    with running_service(root, load_bundle(demo_bundle), env=env, worker_env={"PYTHONPATH": path}) as service:
        yield Review(service, live, video.path)


def api(review: Review, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{review.service.url}{path}", headers=HEADERS, timeout=15, **kwargs)


def until(browser: WebDriver, script: str, timeout_s: float = 30, what: str = "") -> Any:
    """Wait until ``script`` (a JavaScript expression) is truthy; its value."""
    found: list[Any] = []

    def check(driver: WebDriver) -> bool:
        found[:] = [driver.execute_script(f"return ({script})")]
        return bool(found[0])

    WebDriverWait(browser, timeout_s, poll_frequency=0.2).until(check, what or script)
    return found[0]


def wait_json(review: Review, path: str, ok: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = api(review, "GET", path)
        if answer.status_code == 200 and ok(answer.json()):
            return answer.json()
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout_s} s: the last answer was {answer.status_code} {answer.text[:500]}")


def test_review_a_live_camera_event_and_the_jobs_of_the_page(review: Review, tmp_path: Path) -> None:
    started = time.monotonic()
    url, conn = review.service.url, review.service.conn
    hold = f"{review.service.env['VAD_KEY_PREFIX']}test:hold"
    with RtspRelay(log=tmp_path / "relay.log") as relay, chromium() as browser:
        created = api(review, "POST", "/v1/streams", json={"url": relay.url(), "name": "yard camera"})
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        publisher = Publisher(review.live, relay.publish_url(), copy=True, log=tmp_path / "publisher.log").start()
        try:
            cancel_from_the_job_history(review, browser, hold, tmp_path)
            job = api(review, "POST", "/v1/videos", files={"file": ("heldout.mp4", review.video.read_bytes())})
            assert job.status_code == 202, job.text
            job_events = wait_json(review, f"/v1/events?job_id={job.json()['id']}", lambda page: page["events"], 90,
                                   "the job's events")["events"]
            live = wait_json(review, f"/v1/events?stream_id={stream_id}",
                             lambda page: [e for e in page["events"] if e["state"] == "closed"], 60,
                             "a closed event of the camera")["events"]
            event = next(e for e in live if e["state"] == "closed")
            clip = f"/v1/events/{event['id']}/clip.mp4"
            deadline = time.monotonic() + 30  # written once the post-roll has passed
            while api(review, "GET", clip).status_code != 200:
                assert time.monotonic() < deadline, "the camera event's clip was not written within 30 s"
                time.sleep(0.3)
        finally:
            publisher.stop()
        live_view_shows(browser, url, stream_id, event["id"])
        print(f"\nscreenshot: {full_page_screenshot(browser, tmp_path / 'live-view.png', 1100)}")
        browser.set_window_size(1100, 1500)
        review_in_the_events_view(review, browser, event, job_events)
        print(f"screenshot: {full_page_screenshot(browser, tmp_path / 'events-view.png', 1100)}")
    elapsed = time.monotonic() - started
    print(f"review page: {elapsed:.1f} s (stream, job, cancel, Live view, Events view)")
    conn.delete(hold)


def cancel_from_the_job_history(review: Review, browser: WebDriver, hold: str, tmp_path: Path) -> None:
    """Upload from the page a job that the worker holds at its scoring stage; after a reload the history still lists
    it; "Cancel" (confirmed) cancels and deletes it."""
    from workers.synthetic import make_video

    small = make_video(tmp_path / "held.mp4", duration_s=2, fps=25, size=(64, 48), seed=11).path
    review.service.conn.set(hold, "scoring")
    browser.get(f"{review.service.url}/")
    browser.find_element(By.ID, "api-key").send_keys(KEY, Keys.TAB)  # "change": the key is kept for every view
    browser.find_element(By.ID, "file").send_keys(str(small))
    browser.find_element(By.ID, "submit").click()
    job_id = until(browser, "/^#job=/.test(location.hash) && location.hash.slice(5)", 30, "the upload's job id")
    row = f"document.querySelector('#jobs tr[data-job-id=\"{job_id}\"]')"
    until(browser, f"{row} && {row}.dataset.status === 'started'", 60, "the held job listed as started")
    browser.refresh()
    until(browser, f"{row} && {row}.dataset.status === 'started'", 20, "the job listed again after a reload")
    assert "held.mp4" in browser.find_element(By.ID, "jobs").text
    button = browser.find_element(By.CSS_SELECTOR, f'#jobs tr[data-job-id="{job_id}"] .job-delete')
    assert button.text == "Cancel"
    button.click()
    prompt = WebDriverWait(browser, 5).until(lambda driver: driver.switch_to.alert)
    assert "held.mp4" in prompt.text
    prompt.accept()
    until(browser, f"!{row}", 20, "the cancelled job's row gone")
    assert api(review, "GET", f"/v1/jobs/{job_id}").status_code == 404
    review.service.conn.delete(hold)  # the worker goes on and finds the job gone
    browser.refresh()
    time.sleep(1)
    assert not browser.execute_script(f"return {row}"), "a reload brought the cancelled job back"


def live_view_shows(browser: WebDriver, url: str, stream_id: str, event_id: str) -> None:
    """The camera's card lists the event with its thumbnail and shows the camera's latest frame, or once that has
    expired its event's snapshot, as the latest picture."""
    browser.get(f"{url}/#live")
    card = f"document.querySelector('#streams .stream[data-id=\"{stream_id}\"]')"
    item = f"{card}?.querySelector('.recent-event[data-event-id=\"{event_id}\"]')"
    until(browser, f"{item}?.querySelector('img.thumb')?.naturalWidth > 0", 30, "the event's thumbnail in the card")
    until(browser, f"{card}.querySelector('.latest-snapshot').naturalWidth > 0", 20, "the latest picture")
    shown = browser.execute_script(f"return {{...{card}.querySelector('.latest-snapshot').dataset}}")
    caption = browser.execute_script(f"return {card}.querySelector('.latest-caption').textContent")
    if shown["snapshot"] == "live":  # the worker wrote its latest frame less than 30 s ago
        assert float(shown["frameAt"]) > time.time() - 120 and caption.startswith("Camera at "), (shown, caption)
    else:
        assert shown == {"snapshot": "event", "eventId": event_id, "frameAt": ""}, shown
    assert browser.execute_script(f"return {item}.dataset.state") == "closed"


def press(browser: WebDriver, key: str) -> None:
    """A key pressed wherever the focus is (as a person would)."""
    ActionChains(browser).send_keys(key).perform()


def video_state(browser: WebDriver) -> dict[str, float]:
    return browser.execute_script("""
        const v = document.getElementById('review-video');
        const c = document.querySelector('#review-chart .cursor');
        return {ready: v.readyState, duration: v.duration, time: v.currentTime,
                cursor: c ? Number(c.dataset.time) : -1};""")


def selected(browser: WebDriver) -> str | None:
    return browser.execute_script(
        "const b = document.querySelector('.event-item[aria-current=\"true\"]'); return b && b.dataset.id")


def review_in_the_events_view(review: Review, browser: WebDriver, event: dict, job_events: list[dict]) -> None:
    browser.get(f"{review.service.url}/#events")
    ids = [e["id"] for e in api(review, "GET", "/v1/events").json()["events"]]
    assert event["id"] in ids and job_events[0]["id"] in ids
    until(browser, f"document.querySelectorAll('.event-item').length === {len(ids)}", 20, "every event listed")
    assert browser.execute_script("return [...document.querySelectorAll('.event-item')].map((b) => b.dataset.id)") \
        == ids
    row = f"document.querySelector('.event-item[data-id=\"{event['id']}\"]')"
    until(browser, f"{row}.querySelector('img.thumb')?.naturalWidth > 0", 20, "the camera event's thumbnail")
    assert "yard camera" in browser.execute_script(f"return {row}.textContent")
    browser.find_element(By.CSS_SELECTOR, f'.event-item[data-id="{event["id"]}"]').click()  # focuses it
    until(browser, "document.getElementById('review-video').readyState >= 2", 20, "the clip loaded")
    state = video_state(browser)
    assert state["duration"] > 0 and state["cursor"] == pytest.approx(0, abs=0.05)
    assert browser.execute_script("return document.querySelector('#review-chart .score').dataset.count") != "0"
    until(browser, "document.getElementById('event-snapshot').naturalWidth > 0", 10, "the snapshot")

    # space plays (the focus is on the event's button: space does not press it), the cursor follows the video
    browser.execute_script("document.getElementById('review-video').muted = true")
    press(browser, " ")
    until(browser, "document.getElementById('review-video').currentTime > 0.5", 15, "the clip playing")
    press(browser, " ")
    until(browser, "document.getElementById('review-video').paused", 5, "paused by space")
    state = video_state(browser)
    assert state["cursor"] == pytest.approx(state["time"], abs=0.05) and state["cursor"] > 0.5
    assert selected(browser) == event["id"]
    # arrows seek by 2 s; a click on the curve seeks there
    press(browser, Keys.ARROW_LEFT)
    until(browser, f"Math.abs(document.getElementById('review-video').currentTime - {max(0.0, state['time'] - 2)})"
                   " < 0.05", 5, "2 s back")
    g = browser.execute_script("""const c = document.getElementById('review-chart'), b = c.getBoundingClientRect();
        return {left: b.left, top: b.top, x0: +c.dataset.x0, x1: +c.dataset.x1, duration: +c.dataset.duration};""")
    target = g["duration"] * 0.75
    browser.execute_script("document.getElementById('review-chart').scrollIntoView({block: 'center'})")
    chart = browser.find_element(By.ID, "review-chart")
    size = chart.size
    x = g["x0"] + target / g["duration"] * (g["x1"] - g["x0"])
    ActionChains(browser).move_to_element_with_offset(chart, round(x - size["width"] / 2), 0).click().perform()
    until(browser, f"Math.abs(document.getElementById('review-video').currentTime - {target}) < 0.1", 5,
          "seeked by a click on the curve")
    assert video_state(browser)["cursor"] == pytest.approx(target, abs=0.1)

    # t records a true alert, shown at once and found through the API
    press(browser, "t")
    until(browser, f"{row}.dataset.reviewed === 'true'", 10, "the row marked reviewed")
    assert "true alert" in browser.execute_script(f"return {row}.textContent")
    found = api(review, "GET", "/v1/events", params={"verdict": "true_alert"}).json()["events"]
    assert [e["id"] for e in found] == [event["id"]]
    # keys typed in a field are text, not commands
    browser.find_element(By.ID, "f-class").send_keys("fjk")
    time.sleep(0.5)
    assert selected(browser) == event["id"]
    assert api(review, "GET", "/v1/events", params={"verdict": "false_alarm"}).json()["events"] == []
    browser.find_element(By.ID, "f-class").clear()
    browser.execute_script("document.activeElement.blur()")

    # j/k move the selection; f records a false alarm on the other event
    position = ids.index(event["id"])
    step = 1 if position + 1 < len(ids) else -1
    press(browser, "j" if step == 1 else "k")
    until(browser, f"document.querySelector('.event-item[aria-current=\"true\"]')?.dataset.id === "
                   f"'{ids[position + step]}'", 5, "the next event selected")
    press(browser, "f")
    until(browser, "document.getElementById('event-detail').dataset.verdict === 'false_alarm'", 10, "the verdict")
    found = api(review, "GET", "/v1/events", params={"verdict": "false_alarm"}).json()["events"]
    assert [e["id"] for e in found] == [ids[position + step]]
    press(browser, "k" if step == 1 else "j")
    until(browser, f"document.querySelector('.event-item[aria-current=\"true\"]')?.dataset.id === '{event['id']}'", 5,
          "back to the camera's event")
    reviewed = api(review, "GET", "/v1/events", params={"reviewed": "false"}).json()["events"]
    assert {e["id"] for e in reviewed} == set(ids) - {event["id"], ids[position + step]}
