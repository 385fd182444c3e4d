"""``vad.cli.stack.free_port(s)``: the one way the stack, the tests and the benchmarks pick local ports."""

from __future__ import annotations

import socket

import pytest

from vad.cli.stack import free_port, free_ports


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
def test_free_ports_are_distinct_and_bindable(kind: int) -> None:
    ports = free_ports(8, kind)
    assert len(set(ports)) == 8 and all(1024 <= p < 65536 for p in ports)
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", free_port(kind)))
