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
from service.exceptions import ServiceError, StoreUnavailable
from service.store import REDIS_ERRORS

SHARED_DESCRIPTIONS = {  # what a status means on every route that answers it; the others are the route's own
    401: "Missing or unknown `X-API-Key` (only when the deployment configures API keys)",
    503: "Redis (the store of jobs and streams) is unavailable; retry after `Retry-After` seconds",
}

HANDLER_CODES: dict[str, tuple[int, str]] = {  # the codes not named after a ServiceError: code → status, meaning
    "bad_request": (400, "A body the server could not parse at all (JSON that is not UTF-8)."),
    "client_disconnected": (400, "The client went away in the middle of the upload."),
    "not_found": (404, "No such route (the API is described at `/docs` and `/openapi.json`)."),
    "method_not_allowed": (405, "The path has no such method; the `Allow` header lists every method it has."),
    "invalid_request": (422, "A parameter, header or JSON body that does not match the OpenAPI document (a "
                             "malformed event id, a number out of range, a missing or unknown field); `detail` "
                             "names each."),
    "internal_error": (500, "An unexpected failure; the server log has the details."),
    "not_ready": (503, "`GET /readyz` only: Redis, a live worker or writable upload storage is missing (the body "
                       "adds `ready`, `redis`, `workers`, `storage_writable`)."),
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the error body and what it means on this route.

    A status is ``(status, description)`` where the route says what it means for its resource (``(404, "No such
    job ...")``), or a bare status of :data:`SHARED_DESCRIPTIONS` (401, 503).
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for item in statuses:
        status, description = item if isinstance(item, tuple) else (item, SHARED_DESCRIPTIONS[item])
        responses[status] = {"model": ErrorBody, "description": description}
        if status == 503:
            responses[status]["headers"] = RETRY_AFTER
    return responses


def error_code(error: ServiceError | type[ServiceError]) -> str:
    """``UploadTooLarge`` → ``upload_too_large``."""
    cls = error if isinstance(error, type) else type(error)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def error_codes() -> dict[str, tuple[int, str]]:
    """Every ``code`` an error body can carry → its status and meaning, sorted by status then code.

    The :class:`~service.exceptions.ServiceError` classes without subclasses (the meaning is their docstring's first
    paragraph) and :data:`HANDLER_CODES`.
    """
    found = dict(HANDLER_CODES)
    pending = [ServiceError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if not cls.__subclasses__():
            meaning = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
            if not meaning:
                raise ValueError(f"{cls.__name__} has no docstring: its first paragraph is what its code means")
            found[error_code(cls)] = (cls.status_code, meaning)
    return dict(sorted(found.items(), key=lambda item: (item[1][0], item[0])))


def error_response(status: int, detail: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=detail, code=code).model_dump(), status_code=status, headers=headers)


def handler_response(code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer with one of :data:`HANDLER_CODES` (and its status)."""
    return error_response(HANDLER_CODES[code][0], detail, code, headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method this deployment offers on the request's path (Starlette's 405 names only the first route's).

    The API's routes count as this deployment's OpenAPI document has them (``POST /v1/streams`` is left out when
    streams are off), so ``Allow`` and the document agree; the routes outside the document (the page, the docs) are
    tried with their public ``matches``. Mounts (static files) answer any method with their own 405.
    """
    root = request.scope.get("root_path", "")
    path = request.scope["path"].removeprefix(root) if root else request.scope["path"]
    paths = app.state.deployment_document()["paths"]  # service.api.openapi; needs no Redis
    found = {method.upper() for template, item in paths.items()
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
            return handler_response("method_not_allowed", detail, headers)
        if exc.status_code == 404:
            detail = f"no route {request.url.path}; the API is described at /docs and /openapi.json"
            return handler_response("not_found", detail, headers)
        # FastAPI's own refusals (400 for a body it cannot parse): the status' name is the code
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return error_response(exc.status_code, str(exc.detail), code, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return handler_response("invalid_request", problems)

    @app.exception_handler(REDIS_ERRORS[0])
    @app.exception_handler(REDIS_ERRORS[1])
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return error_response(503, f"the store (Redis) is unavailable: {exc}", error_code(StoreUnavailable),
                              {"Retry-After": "5"})

    @app.exception_handler(ClientDisconnect)
    async def disconnected(_: Request, exc: ClientDisconnect) -> JSONResponse:
        return handler_response("client_disconnected", "the client disconnected during the upload")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after sending this, so the server still logs the traceback.
        return handler_response("internal_error", "internal error; the server log has the details")
