"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import StoreDep
from service.api.models import Health, NotReady, Readiness
from service.exceptions import StoreUnavailable
from vad.exceptions import StorageError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": NotReady, "description": "Not ready: Redis, workers or storage missing"}})
def readyz(store: StoreDep) -> JSONResponse:
    """Ready when Redis answers, at least one worker is alive and the upload storage is writable (the directory,
    or the bucket answers)."""
    redis_ok = store.ping()
    try:
        workers = store.live_workers() if redis_ok else 0
    except StoreUnavailable:
        workers, redis_ok = 0, False
    try:
        store.storage.check()  # the directory is writable, or the bucket answers
        writable = True
    except StorageError:
        writable = False
    body = Readiness(ready=redis_ok and workers > 0 and writable, redis=redis_ok, workers=workers,
                     storage_writable=writable)
    if body.ready:
        return JSONResponse(body.model_dump())
    problems = [text for text, ok in (("Redis does not answer", redis_ok), ("no worker is alive", workers > 0),
                                      ("the upload storage is not writable", writable)) if not ok]
    not_ready = NotReady(detail=f"not ready: {'; '.join(problems)}", code="not_ready", **body.model_dump())
    return JSONResponse(not_ready.model_dump(), status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
