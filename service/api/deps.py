"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service.adaptation import StreamBundleStore
from service.events import EventIndex
from service.exceptions import StreamsDisabled, Unauthorized
from service.settings import ServiceSettings
from service.store import JobStore, owner_id
from service.streams import StreamStore


def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_stream_store(request: Request) -> StreamStore:
    store: StreamStore = request.app.state.streams
    return store


def get_bundle_store(request: Request) -> StreamBundleStore:
    bundles: StreamBundleStore = request.app.state.bundles
    return bundles


def get_event_index(request: Request) -> EventIndex:
    index: EventIndex = request.app.state.events
    return index


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]


def require_streams(settings: SettingsDep) -> None:
    """Refuse a route that needs live streams on a deployment without them (no ``VAD_STREAM_ALLOWLIST``).

    Given as a route's ``dependencies=``, it runs before the body is read and the API key is checked: the
    operation does not exist on this deployment, whoever asks and whatever they send.
    """
    if not settings.stream_allowlist:
        raise StreamsDisabled("live streams are disabled on this deployment: the operator has not set "
                              "VAD_STREAM_ALLOWLIST (the hosts and networks streams may reach)")


StoreDep = Annotated[JobStore, Depends(get_store)]
StreamStoreDep = Annotated[StreamStore, Depends(get_stream_store)]
EventIndexDep = Annotated[EventIndex, Depends(get_event_index)]
BundleStoreDep = Annotated[StreamBundleStore, Depends(get_bundle_store)]


API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="APIKey", auto_error=False,
    description="One of the keys in VAD_API_KEYS; required only when the deployment configures keys.")


def _header_bytes(value: str) -> bytes:
    """The bytes a client sent: the server decodes header values as latin-1, so encoding back is lossless."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from an HTTP header; any key compares as its UTF-8 bytes
        return value.encode()


def get_owner(settings: SettingsDep, x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> str:
    """The caller's owner id; with API keys configured, a valid ``X-API-Key`` header is required.

    Keys are compared as bytes in constant time (``hmac.compare_digest`` refuses non-ASCII ``str``), against every
    configured key, each as the UTF-8 bytes a client sends for it.
    """
    if not settings.api_keys:
        return ""
    sent = _header_bytes(x_api_key) if x_api_key is not None else b""
    matches = [key for key in settings.api_keys if hmac.compare_digest(sent, key.encode())]
    if x_api_key is None or not matches:
        raise Unauthorized("a valid X-API-Key header is required")
    return owner_id(matches[0])


OwnerDep = Annotated[str, Depends(get_owner)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


BaseUrlDep = Annotated[str, Depends(base_url)]
