"""One error body for every 4xx and 5xx answer: :class:`~service.api.models.ErrorBody`, ``{"detail", "code"}``.

Our :class:`~service.exceptions.ServiceError` subclasses, FastAPI's request validation, Starlette's own 404 and 405,
Redis outages, dropped uploads and unexpected failures all answer with it, and every route declares the statuses
it returns with :func:`error_responses`.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Route

from service.api.models import ErrorBody
from service.exceptions import ServiceError
from service.store import REDIS_ERRORS

_DESCRIPTIONS = {
    400: "Malformed upload (multipart body, Content-Length, empty file, duplicate `file` part) or the client "
         "disconnected mid-upload",
    401: "Missing or unknown `X-API-Key` (only when the deployment configures API keys)",
    404: "No such job (or it belongs to another API key)",
    408: "The client stopped sending in the middle of the upload (VAD_UPLOAD_IDLE_TIMEOUT_S)",
    409: "The job has not finished: it is queued, running, failed or canceled",
    413: "The upload exceeds the size limit (VAD_MAX_UPLOAD_MB)",
    415: "Not multipart/form-data, or the file is not a recognised video container",
    422: "Invalid option (threshold, frame_scores, model, callback_url)",
    503: "The job store (Redis) is unavailable; retry after `Retry-After` seconds",
}


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the error body and what it means."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        responses[status] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status == 503:
            responses[status]["headers"] = RETRY_AFTER
    return responses


def error_code(exc: ServiceError) -> str:
    """``UploadTooLarge`` → ``upload_too_large``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_response(status: int, detail: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    code = code or HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    return JSONResponse(ErrorBody(detail=detail, code=code).model_dump(), status_code=status, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method this deployment offers on the request's path (Starlette's 405 names only the first route's).

    The API's routes count as this deployment's OpenAPI document has them (``POST /v1/streams`` is left out when
    streams are off), so ``Allow`` and the document agree; the routes outside the document (the page, the docs) are
    tried with their public ``matches``. Mounts (static files) answer any method with their own 405.
    """
    root = request.scope.get("root_path", "")
    path = request.scope["path"].removeprefix(root) if root else request.scope["path"]
    found = {method.upper() for template, item in app.openapi()["paths"].items()
             if _path_regex(template).fullmatch(path) for method in item}
    for route in app.router.routes:
        if isinstance(route, Route) and not route.include_in_schema:
            found |= {m for m in _METHODS if route.matches({**request.scope, "method": m})[0] == Match.FULL}
    return [method for method in _METHODS if method in found]


def _path_regex(template: str) -> re.Pattern[str]:
    """``/v1/jobs/{job_id}`` → a regex of the paths it stands for (a parameter is one segment)."""
    return re.compile("[^/]+".join(re.escape(part) for part in re.split(r"\{[^{}/]*\}", template)))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 503:
            headers["Retry-After"] = "5"
        elif exc.status_code == 405:  # an operation this deployment does not offer (StreamsDisabled)
            headers["Allow"] = ", ".join(allowed_methods(app, request))
        return error_response(exc.status_code, str(exc), error_code(exc), headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request)) or headers.get("Allow", "GET, HEAD")
            detail = f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
        elif exc.status_code == 404:
            detail = f"no route {request.url.path}; the API is described at /docs and /openapi.json"
        else:
            detail = str(exc.detail)
        return error_response(exc.status_code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(422, problems, "invalid_request")

    @app.exception_handler(REDIS_ERRORS[0])
    @app.exception_handler(REDIS_ERRORS[1])
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return error_response(503, f"the job store (Redis) is unavailable: {exc}", "store_unavailable",
                              {"Retry-After": "5"})

    @app.exception_handler(ClientDisconnect)
    async def disconnected(_: Request, exc: ClientDisconnect) -> JSONResponse:
        return error_response(400, "the client disconnected during the upload", "client_disconnected")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after sending this, so the server still logs the traceback.
        return error_response(500, "internal error; the server log has the details", "internal_error")
