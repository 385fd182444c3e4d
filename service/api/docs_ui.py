"""The interactive API docs, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with every asset served by the API.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and ReDoc its fonts from Google), so on an air-gapped
camera host they stay blank. The same pages here take their JavaScript, CSS and icon from the files of the pinned
``fastapi-offline`` package (MIT; it ships Swagger UI 5, Apache-2.0, and ReDoc 2, MIT, as built), mounted at
:data:`ASSETS_PATH`; Swagger UI's online validator badge is off. Nothing is fetched from another host.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
DOCS_URL, REDOC_URL = "/docs", "/redoc"
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}  # the badge would ask validator.swagger.io about the document


def install_docs_ui(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` from local assets.

    ``app`` must be made with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages off). The API key is an
    ``apiKey`` scheme, so Swagger UI needs no OAuth2 redirect page.
    """
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def urls(request: Request) -> tuple[str, str]:
        """The document's URL and the assets' folder, behind whatever prefix the proxy serves the API at."""
        root = request.scope.get("root_path", "").rstrip("/")
        return f"{root}{app.openapi_url}", f"{root}{ASSETS_PATH}"

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        document, assets = urls(request)
        return get_swagger_ui_html(
            openapi_url=document, title=f"{app.title} - Swagger UI", swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css", swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS)

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        document, assets = urls(request)
        return get_redoc_html(openapi_url=document, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{assets}/redoc.standalone.js", redoc_favicon_url=f"{assets}/favicon.png",
                              with_google_fonts=False)
