"""Ports for local servers (brokers, Triton, Ray, services) chosen before they start."""

from __future__ import annotations

import socket

from moderator.local import service
from moderator.local.service import free_port


def test_ports_are_below_the_kernels_ephemeral_range_consecutive_and_never_handed_out_twice():
    # A broker failed in CI with "Address already in use" on a port picked from the ephemeral
    # range: a client's outgoing connection had been given it as its local port in between.
    low = service._ephemeral_low()
    seen: set[int] = set()
    for count in (1, 2, 4) * 30:
        base = free_port(count)
        block = set(range(base, base + count))
        assert max(block) < low
        assert not seen & block
        seen |= block


def test_a_port_in_use_is_never_handed_out(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        busy.listen()
        # Blocks of two may start from taken - 1 to taken + 4: only those after it are free.
        monkeypatch.setattr(service, "_LOWEST", taken - 1)
        monkeypatch.setattr(service, "_ephemeral_low", lambda: taken + 6)
        monkeypatch.setattr(service, "_handed_out", set())
        bases = {free_port(2) for _ in range(2)}
        assert bases <= {taken + 1, taken + 2, taken + 3, taken + 4}
        assert len(bases) == 2
