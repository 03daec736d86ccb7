"""The test helpers' own contract: ports handed to the services a test starts."""

from __future__ import annotations

import socket

from tests import helpers


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range():
    ephemeral = helpers._ephemeral_ports()
    ports = [helpers.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert not [port for port in ports if port in ephemeral]
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_something_listens_on_is_skipped(monkeypatch):
    with socket.socket() as taken, socket.socket() as probe:
        taken.bind(("127.0.0.1", helpers.free_port()))
        taken.listen()
        probe.bind(("127.0.0.1", helpers.free_port()))
        candidate = probe.getsockname()[1]
        probe.close()
        monkeypatch.setattr(helpers, "_PORTS", iter([taken.getsockname()[1], candidate]))
        assert helpers.free_port() == candidate
