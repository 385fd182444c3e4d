"""The web page at `/` in a real headless Chromium, against the real stack (Redis, `vad worker`, uvicorn).

Upload a generated video through the page, wait for the result, and check the chart against the result
JSON the API returns: one point per snippet, one shaded event per event, and clicking the chart seeks the video.
Chromium and chromedriver are Debian's (`scripts/ensure-chromium.sh` installs them); selenium drives them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import running_api
from tests.e2e.conftest import Service
from tests.support.browser import chromium, full_page_screenshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

def wait_for_result(browser: WebDriver, timeout_s: float = 60) -> None:
    """Until the result or an error shows; an error fails the test with its text."""
    def shown(driver: WebDriver) -> bool:
        return bool(driver.execute_script("return !document.getElementById('result').hidden || "
                                          "!document.getElementById('error').hidden"))
    try:
        WebDriverWait(browser, timeout_s, poll_frequency=0.2).until(shown)
    except TimeoutException as exc:
        status = browser.find_element(By.ID, "status").text
        raise AssertionError(f"no result after {timeout_s}s; the page says: {status}") from exc
    error = browser.find_element(By.ID, "error")
    assert not error.is_displayed(), f"the page shows an error: {error.text}"


def submit(browser: WebDriver, video: Path, threshold: float) -> None:
    field = browser.find_element(By.ID, "threshold")
    field.clear()
    field.send_keys(repr(threshold))
    browser.find_element(By.ID, "file").send_keys(str(video))
    browser.find_element(By.ID, "submit").click()


def chart_geometry(browser: WebDriver) -> dict[str, float]:
    return browser.execute_script("""
        const c = document.getElementById('chart'), box = c.getBoundingClientRect();
        const g = {left: box.left, top: box.top, width: box.width, height: box.height};
        for (const k of ['duration', 'x0', 'x1', 'y0', 'y1']) g[k] = Number(c.dataset[k]);
        return g;""")


def click_chart_at(browser: WebDriver, time_s: float) -> None:
    """Click the chart where ``time_s`` is drawn (the chart's user units are CSS pixels)."""
    g = chart_geometry(browser)
    x = g["x0"] + time_s / g["duration"] * (g["x1"] - g["x0"])
    y = (g["y0"] + g["y1"]) / 2
    chart = browser.find_element(By.ID, "chart")
    ActionChains(browser).move_to_element_with_offset(chart, round(x - g["width"] / 2),
                                                      round(y - g["height"] / 2)).click().perform()


def video_time(browser: WebDriver) -> float:
    return float(browser.execute_script("return document.getElementById('video').currentTime"))


def chart_state(browser: WebDriver) -> dict[str, Any]:
    return browser.execute_script("""
        const q = (s) => Array.from(document.querySelectorAll(s));
        const line = document.getElementById('score');
        return {
          points: line.getAttribute('points').trim().split(/\\s+/).map((p) => p.split(',').map(Number)),
          events: q('#chart rect.event').map((r) => ({cls: r.dataset.class, start: Number(r.dataset.start),
            end: Number(r.dataset.end), x: Number(r.getAttribute('x')), width: Number(r.getAttribute('width'))})),
          labels: q('#chart text.event-label').map((t) => t.textContent),
          rows: document.querySelectorAll('#events tbody tr[data-index]').length,
          cursor: Number(document.getElementById('cursor').dataset.time),
        };""")


def test_upload_watch_and_seek_in_chromium(service: Service, browser: WebDriver, tmp_path: Path) -> None:
    from workers.synthetic import make_video

    started = time.monotonic()
    browser.get(f"{service.url}/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "dsanet-vad"
    plays_h264 = browser.execute_script(
        "return document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.42E01E\"') !== ''")
    # Debian's Chromium plays H.264; a build without it gets VP9 in WebM, which every Chromium plays
    name, codec = ("clip.mp4", None) if plays_h264 else ("clip.webm", "libvpx-vp9")
    video = make_video(tmp_path / name, duration_s=10, fps=25, size=(128, 96), seed=5, codec=codec,
                       events=[("flash", 3.0, 5.0)])

    # the threshold: the median score of this (random) model on this video, so there are events and normal parts
    probe = service.upload(video.path, threshold=0.99)
    assert probe.status_code == 202, probe.text
    service.wait(probe.json()["id"])
    scores = httpx.get(f"{service.url}/v1/jobs/{probe.json()['id']}/result").json()["timeline"]["score"]
    threshold = round(float(np.median(scores)), 4)
    assert max(scores) > threshold

    submit(browser, video.path, threshold)
    wait_for_result(browser)
    job_id = browser.execute_script("return location.hash").removeprefix("#job=")
    result = httpx.get(f"{service.url}/v1/jobs/{job_id}/result").json()
    assert result["settings"]["threshold"] == pytest.approx(threshold)
    assert result["events"], "the threshold was chosen so that there is an event"
    assert browser.find_element(By.ID, "upload-progress").get_attribute("value") == "100"

    # the label of a demo model, prominently and on the chart itself
    assert result["model"]["demo"] and result["model"]["label"] == "synthetic demo model"
    demo = browser.find_element(By.ID, "demo-label")
    assert demo.is_displayed() and "synthetic demo model" in demo.text.lower()
    assert browser.find_element(By.ID, "demo-watermark").text.lower() == "synthetic demo model"

    # one point per snippet, at the snippet's middle, at its score; one shaded rectangle per event
    state = chart_state(browser)
    g = chart_geometry(browser)
    timeline = result["timeline"]
    assert len(state["points"]) == len(timeline["score"]) == -(-result["video"]["frames"] // 16)
    middles = (np.array(timeline["start_s"]) + np.array(timeline["end_s"])) / 2
    np.testing.assert_allclose([p[0] for p in state["points"]],
                               g["x0"] + middles / g["duration"] * (g["x1"] - g["x0"]), atol=0.01)
    np.testing.assert_allclose([p[1] for p in state["points"]],
                               g["y1"] - np.array(timeline["score"]) * (g["y1"] - g["y0"]), atol=0.01)
    assert len(state["events"]) == len(result["events"]) == state["rows"]
    for drawn, event in zip(state["events"], result["events"], strict=True):
        assert drawn["cls"] == event["class"]
        assert drawn["start"] == pytest.approx(event["start_s"], abs=1e-3)
        assert drawn["end"] == pytest.approx(event["end_s"], abs=1e-3)
        assert drawn["x"] == pytest.approx(g["x0"] + event["start_s"] / g["duration"] * (g["x1"] - g["x0"]), abs=0.01)
    assert state["labels"] == [event["class"] for event in result["events"]]

    # the local file plays in the page; clicking the chart seeks it, and the cursor follows
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.getElementById('video').readyState")
                                     >= 2)
    assert browser.execute_script("return document.getElementById('video').duration") == pytest.approx(10, abs=0.1)
    browser.execute_script("document.getElementById('chart').scrollIntoView({block: 'center'})")
    one_pixel = g["duration"] / (g["x1"] - g["x0"])
    first = result["events"][0]
    for target in ((first["start_s"] + first["end_s"]) / 2, float(middles[-2]), 1.0):
        click_chart_at(browser, target)
        assert video_time(browser) == pytest.approx(target, abs=1.5 * one_pixel)
        assert chart_state(browser)["cursor"] == pytest.approx(target, abs=1.5 * one_pixel)

    # the keyboard seeks too: one snippet per arrow key
    snippet = timeline["end_s"][0] - timeline["start_s"][0]
    before = video_time(browser)
    browser.find_element(By.ID, "chart").send_keys(Keys.ARROW_RIGHT)
    assert video_time(browser) == pytest.approx(before + snippet, abs=1e-3)

    # while playing, the cursor follows the video
    browser.execute_script("const v = document.getElementById('video'); v.muted = true; v.play();")
    WebDriverWait(browser, 10).until(lambda d: video_time(d) > before + snippet + 0.3)
    browser.execute_script("document.getElementById('video').pause()")
    time.sleep(0.2)
    assert chart_state(browser)["cursor"] == pytest.approx(video_time(browser), abs=0.05)

    screenshot = full_page_screenshot(browser, tmp_path / "web-page.png", 1100)
    print(f"screenshot: {screenshot}")

    # small widths: the chart is redrawn to fit, with the same points
    browser.set_window_size(420, 1500)
    # the chart is redrawn on the resize events, and a window resized in steps may fire them before its last size:
    # wait for the page to fit (it must within 5 s), not for the first redraw below 420 px
    WebDriverWait(browser, 5).until(lambda d: chart_geometry(d)["width"] < 420
                                    and d.execute_script("return document.documentElement.scrollWidth") <= 420,
                                    "the page does not fit a 420 px window")
    assert len(chart_state(browser)["points"]) == len(timeline["score"])
    full_page_screenshot(browser, tmp_path / "web-page-narrow.png", 420)
    browser.set_window_size(1100, 1500)
    assert time.monotonic() - started < 90


def test_a_failed_job_shows_its_reason(service: Service, browser: WebDriver, tmp_path: Path) -> None:
    from workers.synthetic import make_video

    make_video(tmp_path / "ok.mp4", duration_s=2, fps=25, size=(64, 48), seed=9)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes((tmp_path / "ok.mp4").read_bytes()[:64] + bytes(range(256)) * 80)  # MP4 header, garbage
    browser.get(f"{service.url}/")
    submit(browser, corrupt, 0.5)
    WebDriverWait(browser, 60, poll_frequency=0.2).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    error = browser.find_element(By.ID, "error").text
    assert error.startswith("The analysis failed: ") and "Traceback" not in error
    assert browser.find_element(By.ID, "result").is_displayed() is False
    full_page_screenshot(browser, tmp_path / "web-page-failed.png", 1100)


BLOCK_SITE_DATA = {"profile.default_content_setting_values.cookies": 2}  # "Block cookies and site data"


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[str]:
    """The API and the page (no worker: a stream stays queued), streams on, one API key."""
    with running_api(tmp_path, VAD_STREAM_ALLOWLIST="127.0.0.1/32", VAD_API_KEYS="web-key") as (url, _):
        yield url


def test_the_live_view_works_where_the_browser_blocks_storage(api_only: str) -> None:
    """With site data blocked, reading ``localStorage`` throws: both views start anyway, and the Live view adds and
    lists a stream with the key typed in its field, stops it and removes it."""
    with chromium(BLOCK_SITE_DATA) as browser:
        browser.get(f"{api_only}/#live")
        assert browser.execute_script(
            "try { window.localStorage.getItem('x'); return false } catch (e) { return true }"), \
            "storage is not blocked: the test would prove nothing"
        assert browser.find_element(By.ID, "live-view").is_displayed(), "the Live view did not start"
        browser.find_element(By.ID, "live-api-key").send_keys("web-key")
        browser.find_element(By.ID, "stream-url").send_keys("rtsp://127.0.0.1:9/cam")
        browser.find_element(By.ID, "stream-name").send_keys("door")
        browser.find_element(By.ID, "stream-add").click()
        try:
            WebDriverWait(browser, 20, poll_frequency=0.2).until(
                lambda driver: "door" in driver.find_element(By.ID, "streams").text)
        except TimeoutException as exc:
            message = browser.find_element(By.ID, "live-message").text
            raise AssertionError(f"the stream was not listed; the page says: {message!r}") from exc
        assert "Added door" in browser.find_element(By.ID, "live-message").text
        stop_and_remove(browser, api_only, "door")
        browser.find_element(By.ID, "tab-upload").click()  # the upload view started too
        assert browser.find_element(By.ID, "upload-form").is_displayed()


def stop_and_remove(browser: WebDriver, url: str, name: str) -> None:
    """"Stop" keeps the stream (listed as stopped, readable through the API); "Remove" asks first, then deletes it
    (its card goes and the API answers 404 for it)."""
    card = browser.find_element(By.CSS_SELECTOR, "#streams .stream")
    stream_id = card.get_attribute("data-id")
    card.find_element(By.CSS_SELECTOR, ".stream-stop").click()
    WebDriverWait(browser, 20, poll_frequency=0.2).until(
        lambda driver: driver.find_element(By.CSS_SELECTOR, "#streams .stream").get_attribute("data-status")
        == "stopped")
    headers = {"X-API-Key": "web-key"}
    assert httpx.get(f"{url}/v1/streams/{stream_id}", headers=headers).json()["status"] == "stopped"
    assert browser.find_element(By.CSS_SELECTOR, "#streams .stream .stream-stop").get_attribute("disabled")
    browser.find_element(By.CSS_SELECTOR, "#streams .stream .stream-remove").click()
    prompt = WebDriverWait(browser, 5).until(lambda driver: driver.switch_to.alert)
    assert name in prompt.text
    prompt.dismiss()  # "Cancel": nothing is deleted
    time.sleep(0.5)
    assert httpx.get(f"{url}/v1/streams/{stream_id}", headers=headers).status_code == 200
    browser.find_element(By.CSS_SELECTOR, "#streams .stream .stream-remove").click()
    WebDriverWait(browser, 5).until(lambda driver: driver.switch_to.alert).accept()
    WebDriverWait(browser, 20, poll_frequency=0.2).until(
        lambda driver: not driver.find_elements(By.CSS_SELECTOR, "#streams .stream"))
    assert f"Removed {name}" in browser.find_element(By.ID, "live-message").text
    assert browser.find_element(By.ID, "streams-empty").is_displayed()
    gone = httpx.get(f"{url}/v1/streams/{stream_id}", headers=headers)
    assert gone.status_code == 404 and gone.json()["code"] == "stream_not_found"
    time.sleep(2.5)  # a later refresh of the list does not bring it back
    assert not browser.find_elements(By.CSS_SELECTOR, "#streams .stream")
