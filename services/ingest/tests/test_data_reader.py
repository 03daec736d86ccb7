"""`IngestSMTP._read_data` over a real StreamReader: the end of DATA and the line checks do not depend on
how the client's bytes are cut into reads."""

from __future__ import annotations

import asyncio

import pytest

from ingest import codes
from ingest.message import DataCollector
from ingest.server import IngestSMTP


class _Session:
    """The attributes of IngestSMTP that `_read_data` uses."""

    def __init__(self, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop):
        self._reader = reader
        self.loop = loop
        self.transport = object()

    def _reset_timeout(self) -> None:
        pass

    def _peer_ip(self) -> str:
        return "192.0.2.1"


def read(stream: bytes, cut: int) -> tuple[DataCollector, bytes]:
    """Feed `stream` in two reads cut at `cut`; the collector and what is left for the command loop."""

    async def run() -> tuple[DataCollector, bytes]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1001, loop=loop)  # aiosmtpd's line_length_limit
        collector = DataCollector(100_000, 10_000)

        async def feed() -> None:
            reader.feed_data(stream[:cut])
            await asyncio.sleep(0)
            reader.feed_data(stream[cut:])
            reader.feed_eof()

        feeding = asyncio.ensure_future(feed())
        assert await IngestSMTP._read_data(_Session(reader, loop), collector)  # type: ignore[arg-type]
        await feeding
        return collector, await reader.read()

    return asyncio.run(run())


MESSAGE = b"Subject: x\r\n\r\nEnd of a sentence.\r\n..stuffed\r\n" + b"t" * 900 + b"\r\n"


@pytest.mark.parametrize("cut", range(0, len(MESSAGE) + 5, 7))
def test_the_data_ends_at_the_first_dot_line_wherever_the_reads_are_cut(cut):
    collector, rest = read(MESSAGE + b".\r\nQUIT\r\n", cut)
    assert collector.problem is None
    assert collector.content() == MESSAGE.replace(b"\r\n..", b"\r\n.")
    assert rest == b"QUIT\r\n"


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 5])
def test_an_empty_message_ends_at_once(cut):
    collector, rest = read(b".\r\nQUIT\r\n", cut)
    assert collector.content() == b""
    assert rest == b"QUIT\r\n"


@pytest.mark.parametrize("cut", [0, 500, 1000, 1002, 2004, 2005, 2006, 2007, 3000])
def test_a_dot_after_an_over_long_line_is_data_and_smuggling_is_still_named(cut):
    stream = b"a" * 2005 + b"\r\n" + b"b" * 1500 + b".\r\nMAIL FROM:<x@y>\n.\r\n" + b"\r\n.\r\nQUIT\r\n"
    collector, rest = read(stream, cut)
    assert collector.problem == codes.BARE_LINE_ENDING
    assert rest == b"QUIT\r\n"
