"""The policy's parts: IPv4 carried in IPv6, what is internal or metadata, the allow-list's networks and names, and
a host resolved once with every answer checked."""

from __future__ import annotations

import ipaddress

import pytest

from vad.exceptions import SourceRefused
from vad.net.policy import Allowlist, UrlRules, check_url, embedded_ipv4, is_internal, is_metadata

RULES = UrlRules("source", "source", ("https",), "VAD_SOURCE_ALLOWLIST", "VAD_SOURCE_ALLOW_PRIVATE", SourceRefused)


@pytest.mark.parametrize(("address", "inner"), [
    ("::ffff:10.0.0.5", "10.0.0.5"), ("::10.0.0.5", "10.0.0.5"), ("2002:a00:5::1", "10.0.0.5"),
    ("64:ff9b::a00:5", "10.0.0.5"), ("2001:0:4136:e378:8000:63bf:f5ff:fffa", "10.0.0.5"),
    ("::1", None), ("::", None), ("2606:4700::1111", None), ("10.0.0.5", None),
])
def test_the_ipv4_address_an_ipv6_one_carries(address: str, inner: str | None) -> None:
    found = embedded_ipv4(ipaddress.ip_address(address))
    assert (str(found) if found else None) == inner


def test_internal_and_metadata_addresses() -> None:
    assert all(is_internal(a) for a in ("127.0.0.1", "::ffff:127.0.0.1", "2002:7f00:1::", "100.64.0.1", "0.0.0.0",
                                        "224.0.0.1", "fe80::1%eth0", "64:ff9b::a00:5"))
    assert not any(is_internal(a) for a in ("93.184.215.14", "2606:4700::1111", "64:ff9b::808:808"))
    assert all(is_metadata(a) for a in ("169.254.169.254", "fd00:ec2::254", "2002:a9fe:a9fe::", "::a9fe:a9fe"))
    assert not is_metadata("169.254.1.1")


def test_the_allow_list_matches_networks_and_names_and_an_ipv4_mapped_address_as_its_ipv4() -> None:
    listed = Allowlist.parse([" 10.20.0.0/16", "[fd00::7]", "*.Cams.example.com", "", "cam1.site"])
    assert [str(n) for n in listed.networks] == ["10.20.0.0/16", "fd00::7/128"]
    assert listed.names == ("*.cams.example.com", "cam1.site")
    assert listed.contains("10.20.3.4") and listed.contains("::ffff:10.20.3.4") and listed.contains("fd00::7")
    assert not listed.contains("2002:a14:304::")  # 6to4 is reached through a relay, not at 10.20.3.4
    assert listed.names_host("a.cams.example.com") and not listed.names_host("cams.example.com.evil.org")
    assert not Allowlist.parse([" ", ""])


def test_a_host_is_resolved_once_and_every_answer_is_checked() -> None:
    lookups: list[str] = []

    def resolver(host: str, port: int | None) -> list[str]:
        lookups.append(host)
        return {"mixed.example": ["93.184.215.14", "10.0.0.5"], "two.example": ["93.184.215.14", "2606:4700::1"]}[host]

    target = check_url("https://two.example:8443/v.mp4?x=1", RULES, ["*.example"], resolver=resolver)
    assert (target.host, target.port, target.target, target.named) == ("two.example", 8443, "/v.mp4?x=1", True)
    assert target.addresses == ("93.184.215.14", "2606:4700::1") and lookups == ["two.example"]
    with pytest.raises(SourceRefused, match=r"internal address\(es\) 10\.0\.0\.5; set VAD_SOURCE_ALLOW_PRIVATE"):
        check_url("https://mixed.example/", RULES, ["*.example"], resolver=resolver)
    assert check_url("https://mixed.example/", RULES, ["*.example"], True, resolver).addresses[1] == "10.0.0.5"
    with pytest.raises(SourceRefused, match=r"not in the allow-list \(VAD_SOURCE_ALLOWLIST\)"):
        check_url("https://other.test/", RULES, ["*.example"], resolver=resolver)  # never resolved
    assert lookups == ["two.example", "mixed.example", "mixed.example"]
    unresolved = check_url("https://mixed.example/", RULES, ["*.example"], resolver=None)
    assert unresolved.addresses == () and unresolved.display_url == "https://mixed.example/"
