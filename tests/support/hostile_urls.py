"""One table of hostile URLs, run through every caller of the network policy (:mod:`vad.net`): callback delivery,
video sources (the API's check and the worker's fetch) and live streams (the API's check and the worker's connect).

Every URL is ``https://`` (the one scheme all three callers accept), so a refusal comes from the host, never from the
scheme. Each caller is configured as a deployment that lets in everything it can without letting in internal
addresses (:data:`STRICT`): then every row is refused. Under the most permissive settings a caller has
(:data:`PERMISSIVE`: private addresses allowed, any host), the metadata rows are refused all the same.
"""

from __future__ import annotations

from typing import Any

INTERNAL = [
    ("https://127.0.0.1/hook", "loopback"),
    ("https://127.1/hook", "loopback, short form (the resolver expands it)"),
    ("https://2130706433/hook", "loopback as one decimal number"),
    ("https://0x7f000001/hook", "loopback in hexadecimal"),
    ("https://localhost/hook", "a name of the loopback"),
    ("https://[::1]/hook", "IPv6 loopback"),
    ("https://0.0.0.0/hook", "unspecified: connecting to it reaches this host"),
    ("https://[::]/hook", "IPv6 unspecified"),
    ("https://10.0.0.5/hook", "private"),
    ("https://172.16.0.1/hook", "private"),
    ("https://192.168.1.1/hook", "private"),
    ("https://100.64.0.1/hook", "shared address space (carrier-grade NAT)"),
    ("https://169.254.1.1/hook", "link-local"),
    ("https://[fe80::1]/hook", "IPv6 link-local"),
    ("https://[fd12:3456::1]/hook", "IPv6 unique local"),
    ("https://224.0.0.1/hook", "multicast"),
    ("https://240.0.0.1/hook", "reserved"),
    ("https://255.255.255.255/hook", "broadcast"),
    ("https://[::ffff:127.0.0.1]/hook", "IPv4-mapped loopback"),
    ("https://[::ffff:a00:5]/hook", "IPv4-mapped private, in hexadecimal"),
    ("https://[::127.0.0.1]/hook", "IPv4-compatible loopback"),
    ("https://[2002:7f00:1::]/hook", "6to4 of the loopback"),
    ("https://[64:ff9b::a00:5]/hook", "NAT64 of a private address"),
    ("https://[2001:0:4136:e378:8000:63bf:f5ff:fffa]/hook", "Teredo of a private address"),
    ("https://admin:hunter2@127.0.0.1/hook", "loopback, with credentials that no message may quote"),
]
"""Internal addresses, refused unless the caller's ``*_ALLOW_PRIVATE`` (or, for streams, the allow-list) admits them."""

METADATA = [
    ("https://169.254.169.254/latest/meta-data/", "cloud metadata (AWS, GCP, Azure, OpenStack...)"),
    ("https://[fd00:ec2::254]/latest/meta-data/", "AWS metadata over IPv6"),
    ("https://metadata.google.internal/computeMetadata/v1/", "GCP metadata by name"),
    ("https://METADATA.google.internal./computeMetadata/v1/", "GCP metadata by its fully qualified name"),
    ("https://100.100.100.200/latest/meta-data/", "Alibaba Cloud metadata"),
    ("https://169.254.170.2/v2/credentials", "AWS ECS task credentials"),
    ("https://[::ffff:169.254.169.254]/latest/meta-data/", "IPv4-mapped metadata"),
    ("https://[::ffff:a9fe:a9fe]/latest/meta-data/", "IPv4-mapped metadata, in hexadecimal"),
    ("https://[2002:a9fe:a9fe::]/latest/meta-data/", "6to4 of the metadata address"),
    ("https://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "NAT64 of the metadata address"),
]
"""Cloud metadata services: refused whatever the settings say."""

HOSTILE = INTERNAL + METADATA

STRICT: dict[str, Any] = {
    "callback_allowlist": ["*"], "callback_allow_private": False,
    "source_allowlist": ["*"], "source_allow_private": False, "source_buckets": ["media"],
    # streams have no *_ALLOW_PRIVATE: the allow-list alone decides; a camera network and a camera domain
    "stream_allowlist": ["203.0.113.0/24", "*.cams.example.com"],
}
"""Settings of a deployment that accepts any public host for callbacks and sources, and one camera network."""

PERMISSIVE: dict[str, Any] = {
    "callback_allowlist": ["*"], "callback_allow_private": True,
    "source_allowlist": ["*"], "source_allow_private": True, "source_buckets": ["media"],
    "stream_allowlist": ["*", "0.0.0.0/0", "::/0"],
}
"""The most permissive settings each caller has: only the metadata rows are refused."""

SECRET_WORDS = ("hunter2",)
"""What no refusal may quote."""


def ids(rows: list[tuple[str, str]]) -> list[str]:
    """pytest ids of ``rows``: what each URL is."""
    return [why for _, why in rows]
