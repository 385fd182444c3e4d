"""The stream URL syntax and the allow-list as regular expressions, for the OpenAPI document (JSON Schema / ECMA).

A client learns from ``pattern`` which stream URLs the deployment accepts by their host alone: host names on the
allow-list, and the addresses of its IPv4 networks and single IPv6 addresses written in the URL. A name not on the
list that resolves inside a listed network is accepted too; a pattern cannot say so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vad.net.policy import Allowlist, IPNetwork
from vad.streams import nocase

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "rtp", "srt", "tcp")
"""URL schemes a stream may use: what FFmpeg reads over the network. Never ``file:`` or a local path."""


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
_SCHEME = "(" + "|".join(nocase(s) for s in sorted(STREAM_SCHEMES, key=len, reverse=True)) + ")"
_USERINFO = "([A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
_REST = "(:" + _PORT + ")?([/?#][!-~]*)?"
_ANY_HOST = r"([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])"
STREAM_URL_SYNTAX = f"^{_SCHEME}://{_USERINFO}{_ANY_HOST}{_REST}$"
"""What a stream URL looks like (JSON Schema / ECMA regex): scheme, optional user info, host, port, and printable
ASCII after (percent-encode anything else)."""


def _network_pattern(net: IPNetwork) -> str | None:
    """A regex of the addresses of an IPv4 network as URL hosts (octet by octet), or of one IPv6 address."""
    if net.version == 6:
        return re.escape(f"[{net.network_address}]") if net.prefixlen == 128 else None
    first, last = net.network_address.packed, net.broadcast_address.packed
    parts = []
    for lo, hi in zip(first, last, strict=True):
        if lo == hi:
            parts.append(str(lo))
        elif (lo, hi) == (0, 255):
            parts.append(_OCTET)
        else:
            parts.append("(" + "|".join(str(v) for v in range(hi, lo - 1, -1)) + ")")
    return r"\.".join(parts)


def url_pattern(allowlist: Sequence[str]) -> str | None:
    """The JSON Schema ``pattern`` of the stream URLs ``allowlist`` accepts by their host alone (``None``: none)."""
    listed = Allowlist.parse(allowlist)
    hosts = [nocase(re.escape(n)).replace(r"\*", "[A-Za-z0-9_.-]*") for n in listed.names]
    hosts += [p for p in (_network_pattern(net) for net in listed.networks) if p is not None]
    if not hosts:
        return None
    return f"^{_SCHEME}://{_USERINFO}({'|'.join(hosts)}){_REST}$"
