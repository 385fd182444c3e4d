"""A headless Chromium for the web page's browser tests (Debian's chromium and chromedriver, driven by selenium;
``scripts/ensure-chromium.sh`` installs them)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
HEADLESS_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _which(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@contextmanager
def chromium(prefs: dict[str, Any] | None = None) -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile (``prefs`` as its preferences); skips without one."""
    binary, driver_path = _which(CHROMIUM), _which(CHROMEDRIVER)
    if binary is None or driver_path is None:
        pytest.skip(f"no Chromium ({binary or 'missing'}) or chromedriver ({driver_path or 'missing'}): "
                    "bash scripts/ensure-chromium.sh installs them (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    if prefs:
        options.add_experimental_option("prefs", prefs)
    with tempfile.TemporaryDirectory(prefix="vad-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=ChromeService(driver_path), options=options)
        try:
            driver.set_window_size(1100, 1500)
            yield driver
        finally:
            driver.quit()



def full_page_screenshot(browser: WebDriver, path: Path, width: int) -> Path:
    """The whole page at ``width``: the window is made as tall as the page (it keeps that size)."""
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    chrome = browser.get_window_size()["height"] - browser.execute_script("return window.innerHeight")
    browser.set_window_size(width, browser.execute_script("return document.documentElement.scrollHeight") + chrome)
    browser.save_screenshot(str(path))
    return path
