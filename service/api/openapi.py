"""The OpenAPI document as this deployment behaves.

FastAPI describes the routes; three things depend on the deployment and are filled in here:
the API key is required (``security`` and 401 on every operation) only when ``VAD_API_KEYS`` is set; a
``callback_url`` is accepted only for hosts on ``VAD_CALLBACK_ALLOWLIST`` (none when it is empty); and ``model`` must
be one of the models the live workers announced, once any has. FastAPI's own 422 (a list of validation errors) is
removed where it cannot happen: no route parses parameters that can fail validation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.routes.videos import JSON_BODY
from service.settings import ServiceSettings
from service.store import REDIS_ERRORS
from vad.net.patterns import url_pattern
from vad.net.rules import sources_enabled

UPLOAD_PATH, UPLOAD_METHOD = "/v1/videos", "post"
STREAMS_PATH = "/v1/streams"


def install_openapi(app: FastAPI, settings: ServiceSettings) -> None:
    """Serve :func:`deployment_document` with the announced models at ``/openapi.json`` (and so in ``/docs``); the
    document without them (never to be changed) is ``app.state.deployment_document()``."""
    static: dict[str, Any] = {}

    def deployment() -> dict[str, Any]:
        if not static:
            static.update(deployment_document(app, settings))
        return static

    def openapi() -> dict[str, Any]:
        document = copy.deepcopy(deployment())
        try:
            models = app.state.store.model_names()
        except REDIS_ERRORS:
            models = []
        if models:
            _upload_fields(document)["model"]["enum"] = ["", *models]
            if JSON_BODY in _upload_content(document):
                _string_branch(_source_fields(document)["model"])["enum"] = ["", *models]
            if "StreamCreate" in document["components"]["schemas"]:
                _string_branch(_stream_fields(document)["model"])["enum"] = ["", *models]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.deployment_document = deployment  # read-only, without Redis: what the 405 handler's Allow follows


def deployment_document(app: FastAPI, settings: ServiceSettings) -> dict[str, Any]:
    """The document for ``settings``, without the announced models."""
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    operations = [op for item in document["paths"].values() for op in item.values() if isinstance(op, dict)]
    for operation in operations:
        validation = operation.get("responses", {}).get("422", {})
        if "HTTPValidationError" in str(validation.get("content", "")):
            del operation["responses"]["422"]
        if not settings.api_keys:
            operation.pop("security", None)
            operation.get("responses", {}).pop("401", None)
    for name in ("HTTPValidationError", "ValidationError"):
        document.get("components", {}).get("schemas", {}).pop(name, None)
    _upload_fields(document)["callback_url"].update(callback_url_schema(settings.callback_allowlist))
    _source_schema(document, settings)
    _stream_schema(document, settings)
    return document


def _stream_schema(document: dict[str, Any], settings: ServiceSettings) -> None:
    """Stream URLs as the allow-list accepts them; without one, streams are off and ``POST /v1/streams`` is left out.

    An optional parameter is described by its value alone: omitted means none (``null`` is not sent in a query or
    a header).
    """
    for path, item in document["paths"].items():
        for operation in (op for op in item.values() if path.startswith(STREAMS_PATH) and isinstance(op, dict)):
            for parameter in operation.get("parameters", []):
                if "anyOf" in parameter["schema"]:
                    branch = _string_branch(parameter["schema"]) if _has_string(parameter["schema"]) else next(
                        s for s in parameter["schema"]["anyOf"] if s.get("type") != "null")
                    parameter["schema"] = {**{k: v for k, v in parameter["schema"].items() if k != "anyOf"}, **branch}
    pattern = url_pattern(settings.stream_allowlist)
    if pattern is None:
        document["paths"][STREAMS_PATH].pop("post", None)
        document["components"]["schemas"].pop("StreamCreate", None)
        return
    fields = _stream_fields(document)
    fields["url"]["pattern"] = pattern
    fields["url"]["description"] += f" Allow-list: {', '.join(settings.stream_allowlist)}."
    # the camera's main stream: the same policy; empty is no record_url (clips come from url)
    _string_branch(fields["record_url"])["pattern"] = f"^$|{pattern}"
    callback = callback_url_schema(settings.callback_allowlist)
    _string_branch(fields["callback_url"]).update({k: v for k, v in callback.items() if k != "description"})
    fields["callback_url"]["description"] = callback["description"]


def _stream_fields(document: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = document["components"]["schemas"]["StreamCreate"]["properties"]
    return properties


def _has_string(schema: dict[str, Any]) -> bool:
    return any(s.get("type") == "string" for s in schema.get("anyOf", []))


def _string_branch(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``{"type": "string"}`` alternative of an optional string's ``anyOf`` (or the schema itself)."""
    branch: dict[str, Any] = next((s for s in schema.get("anyOf", []) if s.get("type") == "string"), schema)
    return branch


def callback_url_schema(allowlist: Sequence[str]) -> dict[str, Any]:
    """What ``callback_url`` accepts: nothing but empty without an allow-list, else http(s) URLs of its hosts."""
    if not allowlist:
        return {"maxLength": 0, "description": "Callbacks are off on this deployment (VAD_CALLBACK_ALLOWLIST is "
                                               "empty): leave it empty or omit it."}
    hosts = "|".join(re.escape(host).replace(r"\*", r"[^/:?#@]*").replace(r"\?", r"[^/:?#@]")
                     for host in allowlist)
    # empty means no callback (the API reads it so), so the pattern accepts it too
    return {"pattern": f"^([Hh][Tt][Tt][Pp][Ss]?://({hosts})(:[0-9]+)?([/?#].*)?)?$",
            "description": f"POSTed the job when it ends. An http(s) URL on one of the hosts {', '.join(allowlist)} "
                           "(VAD_CALLBACK_ALLOWLIST) that resolves to public addresses unless "
                           "VAD_CALLBACK_ALLOW_PRIVATE is set; empty or omitted: no callback."}


def _upload_content(document: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = document["paths"][UPLOAD_PATH][UPLOAD_METHOD]["requestBody"]["content"]
    return content


def _upload_fields(document: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = _upload_content(document)["multipart/form-data"]["schema"]["properties"]
    return properties


def _source_fields(document: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = _upload_content(document)[JSON_BODY]["schema"]["properties"]
    return properties


def _source_schema(document: dict[str, Any], settings: ServiceSettings) -> None:
    """Sources by URL as the allow-lists accept them; without either list they are off and the JSON body is left
    out of the document."""
    if not sources_enabled(settings):
        _upload_content(document).pop(JSON_BODY, None)
        return
    fields = _source_fields(document)
    fields["source"]["pattern"] = source_pattern(settings.source_allowlist, settings.source_buckets)
    callback = callback_url_schema(settings.callback_allowlist)
    _string_branch(fields["callback_url"]).update({k: v for k, v in callback.items() if k != "description"})
    fields["callback_url"]["description"] = callback["description"]


def _glob_regex(pattern: str, wildcard: str) -> str:
    return re.escape(pattern).replace(r"\*", wildcard).replace(r"\?", wildcard.replace("*", ""))


def source_pattern(hosts: Sequence[str], buckets: Sequence[str]) -> str:
    """What ``source`` accepts: https URLs of the allowed hosts, s3 URLs of objects in the allowed buckets."""
    branches = []
    if hosts:
        names = "|".join(_glob_regex(host, r"[^/:?#@]*") for host in hosts)
        branches.append(f"https://({names})(:[0-9]+)?([/?#].*)?")
    for bucket in buckets:
        branches.append("s3://(?!.*/$)" + (_glob_regex(bucket, ".*") if "/" in bucket else re.escape(bucket) + "/.+"))
    return "^(" + "|".join(branches) + ")$"
