"""The one policy for every connection the service opens on a client's behalf: which hosts and addresses it may reach.

Three callers use it, each with its own allow-list and settings (:mod:`vad.net.rules`): callback URLs
(``VAD_CALLBACK_ALLOWLIST``), video source URLs (``VAD_SOURCE_ALLOWLIST``) and live-stream URLs
(``VAD_STREAM_ALLOWLIST``). The same rules apply to all three:

* An allow-list entry is a network (``10.20.0.0/16``, ``fd00::/8``), an address (``192.168.1.7``), a host name
  (``cam1.site``) or a wildcard (``*.cams.example.com``); names match case-insensitively.
* A host is allowed when its name matches a name entry (the operator trusts that name's DNS), or else when every
  address it resolves to lies inside a listed network.
* Internal addresses (private, loopback, link-local, unspecified, multicast, reserved, shared CGNAT space) are
  refused unless the caller's ``*_ALLOW_PRIVATE`` setting is on; the stream allow-list has no such setting because
  cameras live on private networks: there the allow-list alone decides.
* Cloud metadata services (``169.254.169.254``, ``fd00:ec2::254``, ``metadata.google.internal``…) are never
  reached, whatever the settings.
* An IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, 6to4
  ``2002::/16``, NAT64 ``64:ff9b::/96``, Teredo ``2001::/32``) is judged by both, so ``::ffff:127.0.0.1`` is
  loopback and ``2002:a9fe:a9fe::`` the metadata address.
* A host name is resolved once; the :class:`Target` carries the addresses that were checked, and a client connects
  to those only (:mod:`vad.net.pinned`): a second resolution could answer differently (DNS rebinding). A redirect
  is a new URL, checked like the first before it is followed.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from vad.net.redact import redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int | None], Sequence[str]]

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean...
    "169.254.170.2",  # AWS ECS task credentials
    "169.254.170.23",  # AWS EKS pod identity
    "fd00:ec2::254",  # AWS over IPv6
    "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
"""Cloud metadata services: they hand out the host's credentials, so no URL may reach them."""

METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"})
"""Names of metadata services, refused before they are resolved."""

WEB_PORTS: Mapping[str, int] = MappingProxyType({"http": 80, "https": 443})

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo client), else ``None``."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # :: and ::1 are IPv6's own
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_forms(address: str | IPAddress) -> tuple[IPAddress, ...]:
    """``address`` (a zone index dropped) and the IPv4 address it carries, if any."""
    ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    inner = embedded_ipv4(ip)
    return (ip,) if inner is None else (ip, inner)


def is_metadata(address: str | IPAddress) -> bool:
    """Whether ``address`` (or the IPv4 address inside it) is a cloud metadata service."""
    return any(form in METADATA_ADDRESSES for form in address_forms(address))


def is_internal(address: str | IPAddress) -> bool:
    """Whether ``address`` (or the IPv4 address inside it) is anything but a public unicast address."""
    return any(not form.is_global or form.is_multicast for form in address_forms(address))


def resolve_host(host: str, port: int | None) -> tuple[str, ...]:
    """Every IPv4/IPv6 address of ``host``, in the resolver's order (no connection is made)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)))


@dataclass(frozen=True)
class Allowlist:
    """An allow-list setting, split into networks (addresses are /32 or /128 networks) and name patterns."""

    networks: tuple[IPNetwork, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Allowlist:
        """Read the entries of an allow-list setting; blank entries are ignored."""
        networks: list[IPNetwork] = []
        names: list[str] = []
        for entry in (e.strip().lower() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.append(entry)
        return cls(tuple(networks), tuple(names))

    def __bool__(self) -> bool:
        return bool(self.networks or self.names)

    def names_host(self, host: str) -> bool:
        """Whether ``host`` (lower case) matches a name entry or wildcard."""
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.names)

    def contains(self, address: str | IPAddress) -> bool:
        """Whether ``address`` lies in a listed network; an IPv4-mapped address counts as its IPv4 address (the
        socket reaches that one), the 6to4, NAT64 and Teredo forms do not (they are reached through a gateway)."""
        ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
        forms = (ip, ip.ipv4_mapped) if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else (ip,)
        return any(form.version == net.version and form in net for form in forms for net in self.networks)


@dataclass(frozen=True)
class UrlRules:
    """What one caller accepts and how its refusals read: the schemes, the settings to name, the error type.

    Attributes:
        what: The kind of URL in messages (``callback``, ``source``, ``stream``).
        field: The request field in messages (``callback_url``).
        schemes: Accepted schemes, lower case.
        allowlist_setting: The setting to name when a host is outside the allow-list.
        private_setting: The setting that allows internal addresses; ``None``: the allow-list alone decides.
        refused: The exception raised (a :class:`ValueError` of :mod:`vad.exceptions`).
        default_ports: The port of a scheme when the URL gives none.
    """

    what: str
    field: str
    schemes: tuple[str, ...]
    allowlist_setting: str
    private_setting: str | None
    refused: type[ValueError]
    default_ports: Mapping[str, int] = dataclasses.field(default_factory=lambda: WEB_PORTS)


@dataclass(frozen=True)
class Target:
    """A URL that passed the policy, with the addresses its host resolved to when it was checked.

    Attributes:
        url: The URL as given (credentials included: only the connecting side uses it).
        scheme: Lower-case scheme.
        host: Host name or address, lower case (an IPv6 address without brackets): the ``Host`` header and, for TLS,
            the name the certificate must carry.
        port: The port (the scheme's default when the URL gives none; ``None`` when it has none).
        target: Path and query to request (``/`` when the URL has no path).
        addresses: The checked addresses, in resolver order: the only ones a client may connect to (empty when the
            check was made without resolving).
        named: Whether the host was allowed by a name entry rather than by its addresses.
    """

    url: str
    scheme: str
    host: str
    port: int | None
    target: str
    addresses: tuple[str, ...]
    named: bool = False

    @property
    def display_url(self) -> str:
        """The URL without credentials or secret query values, the only form ever shown."""
        return redact_url(self.url)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def check_host(host: str, port: int | None, rules: UrlRules, allowlist: Allowlist, allow_private: bool = False,
               resolver: Resolver | None = resolve_host) -> tuple[tuple[str, ...], bool]:
    """Check ``host`` and the addresses it resolves to; ``(the checked addresses, allowed by name)``.

    Args:
        host: Host name or address (lower case, IPv6 without brackets).
        port: Passed to the resolver.
        rules: The caller's rules.
        allowlist: The caller's allow-list.
        allow_private: The caller's ``*_ALLOW_PRIVATE`` setting (ignored when ``rules.private_setting`` is ``None``).
        resolver: Resolves a name; ``None`` checks only what the name tells (the connecting side resolves and checks
            again), and returns no addresses for a name.

    Raises:
        ValueError: ``rules.refused``, saying why.
    """
    refuse, what = rules.refused, rules.what
    name = host.rstrip(".")  # a fully qualified name's root dot names the same host
    if name in METADATA_HOSTS or name.endswith(".metadata.google.internal"):
        raise refuse(f"the {what} host {host!r} is a cloud metadata service, which is never reachable")
    literal = _literal(host)
    if literal is not None and is_metadata(literal):
        raise refuse(f"the {what} host {host!r} is a cloud metadata address, which is never reachable")
    named = allowlist.names_host(host)
    # an address must lie in a listed network; a name not on the list may still resolve into one
    listed = allowlist.contains(literal) if literal is not None else bool(allowlist.networks)
    if not named and not listed:
        raise refuse(f"the {what} host {host!r} is not in the allow-list ({rules.allowlist_setting})")
    if literal is not None:
        addresses: tuple[str, ...] = (str(literal),)
    elif resolver is None:
        return (), named
    else:
        try:
            addresses = tuple(dict.fromkeys(resolver(host, port)))
        except (OSError, UnicodeError) as exc:
            unlisted = "" if named else f" is not in the allow-list ({rules.allowlist_setting}) and"
            raise refuse(f"the {what} host {host!r}{unlisted} does not resolve") from exc
        if not addresses:
            raise refuse(f"the {what} host {host!r} has no IPv4 or IPv6 address")
    check_addresses(host, addresses, named, rules, allowlist, allow_private)
    return addresses, named


def check_addresses(host: str, addresses: Sequence[str], named: bool, rules: UrlRules, allowlist: Allowlist,
                    allow_private: bool = False) -> None:
    """Refuse (``rules.refused``) unless every one of ``addresses``, those of ``host``, may be reached.

    Args:
        host: The host name, for messages.
        addresses: What the host resolved to.
        named: Whether the host matched a name entry (else each address must lie in a listed network).
        rules: The caller's rules.
        allowlist: The caller's allow-list.
        allow_private: The caller's ``*_ALLOW_PRIVATE`` setting.
    """
    refuse, what = rules.refused, rules.what
    metadata = [a for a in addresses if is_metadata(a)]
    if metadata:
        raise refuse(f"the {what} host {host!r} resolves to {', '.join(metadata)}, a cloud metadata address, "
                     "which is never reachable")
    outside = [] if named else [a for a in addresses if not allowlist.contains(a)]
    if outside:
        raise refuse(f"the {what} host {host!r} resolves to {', '.join(outside)}, outside the allow-list "
                     f"({rules.allowlist_setting})")
    if rules.private_setting is not None and not allow_private:
        internal = sorted(a for a in addresses if is_internal(a))
        if internal:
            raise refuse(f"the {what} host {host!r} resolves to internal address(es) {', '.join(internal)}; "
                         f"set {rules.private_setting}=true to allow it")


def _schemes_text(schemes: tuple[str, ...]) -> str:
    return "http(s)" if schemes == ("http", "https") else "/".join(schemes)


def split_url(url: str, rules: UrlRules) -> tuple[str, str, int | None, str]:
    """``(scheme, host, port, path and query)`` of ``url``; ``rules.refused`` unless it has an accepted scheme, a
    host and a valid port."""
    try:
        parts = urlsplit(url)
        scheme, hostname = parts.scheme.lower(), parts.hostname
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise rules.refused(f"{rules.field} cannot be parsed ({redact_url(str(exc))})") from exc
    if scheme not in rules.schemes or not hostname:
        raise rules.refused(f"{rules.field} must be an {_schemes_text(rules.schemes)} URL with a host")
    try:
        port = parts.port
    except ValueError as exc:
        raise rules.refused(f"{rules.field} has an invalid port: {exc}") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, hostname.lower(), port if port is not None else rules.default_ports.get(scheme), target


def check_url(url: str, rules: UrlRules, allowlist: Sequence[str] | Allowlist, allow_private: bool = False,
              resolver: Resolver | None = resolve_host) -> Target:
    """Check ``url`` against the policy and pin the addresses it was checked at.

    The host is resolved once; every address must pass, and a client connects only to :attr:`Target.addresses`
    (never to a second resolution of the name).

    Args:
        url: The URL.
        rules: The caller's rules.
        allowlist: The caller's allow-list setting (or it parsed).
        allow_private: The caller's ``*_ALLOW_PRIVATE`` setting.
        resolver: Resolves the host; ``None`` checks only the URL and what its host tells without resolving.

    Raises:
        ValueError: ``rules.refused``: the URL, its host or one of its addresses is not allowed, or the host does not
            resolve; the message never quotes the URL's credentials.
    """
    scheme, host, port, target = split_url(url, rules)
    listed = allowlist if isinstance(allowlist, Allowlist) else Allowlist.parse(allowlist)
    addresses, named = check_host(host, port, rules, listed, allow_private, resolver)
    return Target(url, scheme, host, port, target, addresses, named)
