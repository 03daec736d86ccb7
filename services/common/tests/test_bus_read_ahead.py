"""py-amqp reading ahead (`common.bus.read_ahead`) returns the same frames, with fewer `recv` calls."""

from __future__ import annotations

import random
import socket
import struct
import threading

import amqp.transport

from common import bus


class CountingSocket:
    """One end of a socket pair, counting the `recv` calls made on it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def getsockname(self):
        return self.sock.getsockname()

    def getpeername(self):
        return self.sock.getpeername()


def frames(count: int, rng: random.Random) -> list[tuple[int, int, bytes]]:
    sizes = [0, 1, 7, 8, 200, bus.AMQP_READ_AHEAD - 8, bus.AMQP_READ_AHEAD, 3 * bus.AMQP_READ_AHEAD + 5]
    return [
        (
            rng.choice((1, 2, 3, 8)),
            rng.randrange(1 << 16),
            rng.randbytes(rng.choice([*sizes, rng.randrange(600)])),
        )
        for _ in range(count)
    ]


def read_all(expected: list[tuple[int, int, bytes]], rng: random.Random) -> tuple[list, int]:
    """Write `expected` as AMQP frames into a socket pair in random pieces; read them back with py-amqp."""
    near, far = socket.socketpair()
    wire = b"".join(struct.pack(">BHI", t, c, len(p)) + p + b"\xce" for t, c, p in expected)

    def write() -> None:
        position = 0
        while position < len(wire):
            step = rng.randrange(1, 3000)
            far.sendall(wire[position : position + step])
            position += step

    writer = threading.Thread(target=write)
    writer.start()
    transport = amqp.transport.TCPTransport.__new__(amqp.transport.TCPTransport)
    counting = CountingSocket(near)
    transport.sock = counting
    transport._setup_transport()
    try:
        read = [transport.read_frame() for _ in expected]
    finally:
        writer.join()
        near.close()
        far.close()
    return read, counting.recvs


def test_frames_read_ahead_are_the_frames_sent():
    assert amqp.transport.TCPTransport._setup_transport.reads_ahead
    rng = random.Random(5)
    expected = frames(400, rng)
    read, recvs = read_all(expected, rng)
    assert read == expected
    assert recvs < len(expected)  # exact reads would take three per frame


def test_reading_ahead_is_installed_once():
    setup = amqp.transport.TCPTransport._setup_transport
    bus.read_ahead()
    assert amqp.transport.TCPTransport._setup_transport is setup
