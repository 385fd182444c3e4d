"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from service.exceptions import Unauthorized
from service.settings import ServiceSettings
from service.store import JobStore, owner_id


def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]


def get_owner(settings: SettingsDep, x_api_key: Annotated[str | None, Header()] = None) -> str:
    """The caller's owner id; with API keys configured, a valid ``X-API-Key`` header is required."""
    if not settings.api_keys:
        return ""
    if x_api_key is None or not any(hmac.compare_digest(x_api_key, key) for key in settings.api_keys):
        raise Unauthorized("a valid X-API-Key header is required")
    return owner_id(x_api_key)


OwnerDep = Annotated[str, Depends(get_owner)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


BaseUrlDep = Annotated[str, Depends(base_url)]
