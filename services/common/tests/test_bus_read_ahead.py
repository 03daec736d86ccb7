"""py-amqp reading ahead (`common.bus.read_ahead`) returns the same frames, with fewer `recv` calls."""

from __future__ import annotations

import random
import struct

import amqp.transport

from common import bus


class ArrivingSocket:
    """A socket whose data arrives in the given pieces, counting the `recv` calls made on it: a `recv`
    returns at most the rest of the piece being read, as a socket returns what has arrived so far."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        if not self.pieces:
            return b""
        data, rest = self.pieces[0][:size], self.pieces[0][size:]
        if rest:
            self.pieces[0] = rest
        else:
            self.pieces.pop(0)
        return data

    def sendall(self, data: bytes) -> None:
        raise AssertionError("nothing is written here")


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
    """Send `expected` as AMQP frames in pieces cut at random (inside headers, payloads and end bytes
    alike); read them back with py-amqp. Returns the frames read and the `recv` calls made."""
    wire = b"".join(struct.pack(">BHI", t, c, len(p)) + p + b"\xce" for t, c, p in expected)
    pieces, position = [], 0
    while position < len(wire):
        step = rng.randrange(1, 20_000)
        pieces.append(wire[position : position + step])
        position += step
    transport = amqp.transport.TCPTransport.__new__(amqp.transport.TCPTransport)
    arriving = ArrivingSocket(pieces)
    transport.sock = arriving
    transport._setup_transport()
    read = [transport.read_frame() for _ in expected]
    assert not arriving.pieces  # every byte sent was read, and nothing more was asked for
    return read, arriving.recvs


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
