"""HTTP(S) connections to the addresses a :class:`~vad.net.policy.Target` was checked at, never to a new resolution.

The socket is opened to a checked IP address, while the ``Host`` header, TLS SNI and the certificate check use the
host name, as for any client: a DNS answer that changed since the check (DNS rebinding) cannot lead past the policy.
Standard library only.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl

from vad.net.policy import Target


def connect(addresses: tuple[str, ...], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers; no name resolution happens here."""
    error: OSError = OSError("no address to connect to")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((address, port) if ip.version == 4 else (address, port, 0, 0))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the checked addresses of a :class:`Target`, with its host name in the ``Host`` header."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.addresses = target.addresses

    def connect(self) -> None:
        self.sock = connect(self.addresses, self.port, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked addresses; SNI and the certificate check use the host name."""

    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext | None = None) -> None:
        self.tls = context or ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.addresses = target.addresses

    def connect(self) -> None:
        sock = connect(self.addresses, self.port, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def pinned_connection(target: Target, timeout: float, tls: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """An unopened connection to ``target``'s checked addresses: HTTPS (verified with ``tls`` or the system's
    defaults) for an ``https`` target, else plain HTTP."""
    if target.scheme == "https":
        return PinnedHTTPSConnection(target, timeout, tls)
    return PinnedHTTPConnection(target, timeout)
