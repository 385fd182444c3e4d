"""The FastAPI application factory. Imports no torch, open_clip or decoders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from service.adaptation import StreamBundleStore
from service.api.docs_ui import install_docs_ui
from service.api.errors import install_error_handlers
from service.api.openapi import install_openapi
from service.api.routes import events, evidence, health, jobs, streams, videos
from service.api.sse import ending_on_signals
from service.events import EventIndex
from service.metrics import Metrics
from service.settings import ServiceSettings
from service.store import JobStore, connect
from service.streams import StreamStore
from vad import __version__

API_DESCRIPTION = """Upload a video, poll its job, get a JSON timeline: per-snippet anomaly scores and class
probabilities from DSANet, and the detected events with class, start and end time. A web page for people is at `/`.

Every 4xx and 5xx answer has the body `{"detail": "<what was wrong and what to do>", "code": "<stable reason>"}`.
When the deployment sets `VAD_API_KEYS`, every `/v1` call needs an `X-API-Key` header (401 without a valid one)."""

WEB_DIR = Path(__file__).parent / "web"  # the page: static HTML/JS/CSS shipped as package data, no build step


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open event streams end as soon as the server is asked to stop; the asyncio Redis client closes last."""
    with ending_on_signals(app.state):
        yield
    client = getattr(app.state, "aredis", None)
    if client is not None:
        await client.aclose()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the API. ``settings`` default to the ``VAD_*`` environment."""
    settings = settings or ServiceSettings()
    app = FastAPI(title="dsanet-vad", version=__version__, description=API_DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # install_docs_ui serves both pages without a CDN
    app.state.settings = settings
    app.state.store = store = JobStore(connect(settings), settings)
    app.state.streams = StreamStore(store.redis, settings)
    app.state.events = EventIndex(store.redis, store.keys)
    app.state.bundles = StreamBundleStore(store.redis, settings, store.storage)
    app.state.metrics = metrics = Metrics(store, app.state.streams, app.state.events)
    app.middleware("http")(metrics.middleware)
    for module in (videos, jobs, streams, events, evidence, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    install_docs_ui(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    install_error_handlers(app)
    install_openapi(app, settings)
    return app
