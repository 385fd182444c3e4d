"""The web page is served by the API, from package data, and fetches nothing from elsewhere."""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import WEB_DIR, create_app
from service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def page_client(tmp_path: Path) -> Iterator[TestClient]:
    """The app with no Redis behind it (a port nobody listens on): serving the page must not need one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServiceSettings(redis_url=f"redis://127.0.0.1:{port}/0", storage_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        yield client


def test_index_and_its_assets_are_served(page_client: TestClient) -> None:
    client = page_client
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="static/app.js">' in page.text and 'href="static/style.css"' in page.text
    assert '<script type="module" src="static/live.js">' in page.text
    for module in ("app.js", "api.js", "chart.js", "live.js"):  # ES modules: the browser wants a JavaScript type
        script = client.get(f"/static/{module}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/missing.js").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]  # the page is not part of the API


def test_nothing_is_loaded_from_another_host() -> None:
    for path in WEB_DIR.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        urls -= {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
        assert not urls, f"{path.name} refers to {sorted(urls)}"
        assert "@import" not in text and "url(" not in text.replace("URL.createObjectURL(", "")


def test_the_page_ships_as_package_data() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "web/*" in package_data["service"]
    assert {p.name for p in WEB_DIR.iterdir()} == {"index.html", "style.css", "app.js", "api.js", "chart.js",
                                                   "live.js"}
