"""The FastAPI application factory. Imports no torch, open_clip or decoders."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from service.api.routes import health, jobs, videos
from service.exceptions import ServiceError
from service.metrics import Metrics
from service.settings import ServiceSettings
from service.store import REDIS_ERRORS, JobStore, connect
from vad import __version__

API_DESCRIPTION = """Upload a video, poll its job, get a JSON timeline: per-snippet anomaly scores and class
probabilities from DSANet, and the detected events with class, start and end time. A web page for people is at `/`."""

WEB_DIR = Path(__file__).parent / "web"  # the page: static HTML/JS/CSS shipped as package data, no build step


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the API. ``settings`` default to the ``VAD_*`` environment."""
    settings = settings or ServiceSettings()
    app = FastAPI(title="dsanet-vad", version=__version__, description=API_DESCRIPTION)
    app.state.settings = settings
    app.state.store = store = JobStore(connect(settings), settings)
    app.state.metrics = metrics = Metrics(store)
    app.middleware("http")(metrics.middleware)
    for module in (videos, jobs, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(REDIS_ERRORS[0])
    @app.exception_handler(REDIS_ERRORS[1])
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the job store (Redis) is unavailable: {exc}"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(ClientDisconnect)
    async def disconnected(_: Request, exc: ClientDisconnect) -> JSONResponse:
        return JSONResponse({"detail": "the client disconnected during the upload"}, status_code=400)

    return app
