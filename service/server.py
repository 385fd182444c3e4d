"""The API's server: uvicorn serving :func:`service.app.create_app`, started by ``vad api``.

``vad api`` is what ``vad serve`` and the API image run, so this is the one place that knows the address the API
listens on; with no ``VAD_API_KEYS`` and an address beyond loopback it logs a warning at start-up (anyone who
reaches the port could then upload videos, read every job and add streams).
"""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from service.app import create_app
from service.settings import ServiceSettings

log = logging.getLogger("uvicorn.error")  # uvicorn's own start-up lines go there, formatted alike


def binds_beyond_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` can be reached from other machines.

    Args:
        host: The listen address: an IP address, ``0.0.0.0``/``::`` (every interface) or a host name.

    Returns:
        ``False`` only for loopback addresses and ``localhost``; a name is assumed to resolve beyond loopback.
    """
    name = host.strip().strip("[]")
    if name.lower() == "localhost" or name.lower().endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(name).is_loopback
    except ValueError:
        return True


def open_access_warning(host: str, port: int, settings: ServiceSettings) -> str | None:
    """The start-up warning for an API reachable from other machines without API keys; ``None`` when it is not."""
    if settings.api_keys or not binds_beyond_loopback(host):
        return None
    return (f"the API listens on {host}:{port}, beyond this machine, and VAD_API_KEYS is empty: anyone who reaches "
            "the port can upload videos, read every job and add streams. Set VAD_API_KEYS and put a TLS proxy in "
            "front (docs/service.md#access-port-8000-api-keys-tls).")


def run(host: str, port: int, settings: ServiceSettings | None = None, log_level: str = "info") -> None:
    """Serve the API until SIGINT/SIGTERM.

    Args:
        host: Listen address (``0.0.0.0`` for every interface, as in the API image).
        port: Listen port.
        settings: The API's settings; default: the ``VAD_*`` environment.
        log_level: uvicorn's log level (``warning`` keeps the warning above and hides the access log).
    """
    settings = settings or ServiceSettings()
    # proxy_headers: X-Forwarded-* are trusted from FORWARDED_ALLOW_IPS only (uvicorn's default 127.0.0.1).
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level=log_level, proxy_headers=True)
    warning = open_access_warning(host, port, settings)  # after Config: uvicorn has configured its loggers
    if warning:
        log.warning(warning)
    uvicorn.Server(config).run()
