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
                                                   "live.js", "events.js", "jobs.js", "views.js"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_load_every_asset_from_the_api_itself(page_client: TestClient, page: str) -> None:
    """Air-gapped hosts: the docs pages name only same-origin URLs (no CDN, no web fonts), and each answers 200."""
    html = page_client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    urls = set(re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html.text))
    urls = {url for pair in urls for url in pair if url}
    scripts = {url for url in urls if url.endswith(".js")}
    assert scripts and "/openapi.json" in urls, urls  # the UI itself, and the document it renders
    remote = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", html.text)
    assert not remote, f"{page} refers to {remote}"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), (page, url)
        asset = page_client.get(url)
        assert asset.status_code == 200 and asset.content, (page, url)
    assert "validatorUrl" in html.text or page == "/redoc"  # Swagger UI's badge would ask validator.swagger.io
