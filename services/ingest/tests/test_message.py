"""DATA checking and the headers ingest prepends: pure functions, no network."""

from __future__ import annotations

import datetime as dt

import pytest

from ingest import codes
from ingest.message import (
    DataCollector,
    ReceivedInfo,
    address_literal,
    protocol_name,
    received_header,
    stored_message,
    trace_header,
)


def collect(*lines: bytes, max_bytes: int = 1_000_000, max_header_bytes: int = 10_000) -> DataCollector:
    collector = DataCollector(max_bytes, max_header_bytes)
    for line in lines:
        collector.feed_line(line)
    return collector


def test_a_clean_message_is_kept_byte_for_byte_without_transparency_dots():
    collector = collect(b"Subject: hello\r\n", b"\r\n", b"..leading dot\r\n", b"body\r\n")
    assert collector.problem is None
    assert collector.content() == b"Subject: hello\r\n\r\n.leading dot\r\nbody\r\n"
    assert collector.size == len(collector.content())


@pytest.mark.parametrize(
    "line",
    [
        b"text\n.\n\r\n",  # <LF>.<LF>
        b"text\n.\r\n",  # <LF>.<CR><LF>
        b"text\r.\rMAIL FROM:<x@y>\r\n",  # <CR>.<CR>
        b".\nRCPT TO:<x@y>\r\n",  # <CR><LF>.<LF> (the CRLF ended the previous line)
        b"bare cr\rinside\r\n",
        b"bare lf\ninside\r\n",
    ],
)
def test_a_bare_cr_or_lf_anywhere_refuses_the_whole_message(line):
    collector = collect(b"Subject: x\r\n", b"\r\n", line, b"more\r\n")
    assert collector.problem == codes.BARE_LINE_ENDING
    with pytest.raises(ValueError):
        collector.content()


def test_a_nul_octet_is_refused():
    assert collect(b"Subject: x\r\n", b"\r\n", b"a\x00b\r\n").problem == codes.NUL_IN_MESSAGE


def test_line_length_limit_is_998_octets_plus_crlf_after_unstuffing():
    assert collect(b"a" * 998 + b"\r\n").problem is None
    assert collect(b"." + b"a" * 998 + b"\r\n").problem is None  # the transparency dot does not count
    assert collect(b"a" * 999 + b"\r\n").problem == codes.LINE_TOO_LONG


def test_an_over_long_line_read_in_fragments_is_refused_and_bare_endings_still_win():
    collector = DataCollector(1_000_000, 10_000)
    collector.feed_fragment(b"a" * 1000)
    assert collector.problem == codes.LINE_TOO_LONG
    collector.feed_fragment(b"b\nc")
    assert collector.problem == codes.BARE_LINE_ENDING


def test_the_header_section_has_its_own_limit():
    headers = [b"X-Filler: " + b"a" * 900 + b"\r\n"] * 20  # ~18 KB of headers
    assert collect(*headers, b"\r\n", b"body\r\n", max_header_bytes=10_000).problem == codes.HEADER_TOO_BIG
    assert collect(*headers, b"\r\n", b"body\r\n", max_header_bytes=20_000).problem is None


def test_a_large_body_does_not_count_as_header():
    body = [b"b" * 900 + b"\r\n"] * 50
    assert collect(b"Subject: x\r\n", b"\r\n", *body, max_header_bytes=1_000).problem is None


def test_the_message_size_limit_drops_the_data():
    collector = collect(b"Subject: x\r\n", b"\r\n", b"a" * 500 + b"\r\n", b"a" * 500 + b"\r\n", max_bytes=800)
    assert collector.problem == codes.MESSAGE_TOO_BIG
    assert collector.size > 800


def test_problems_are_ranked_so_smuggling_is_named_first():
    collector = collect(b"a" * 2000 + b"\r\n", b"x\ny\r\n", max_bytes=100)
    assert collector.problem == codes.BARE_LINE_ENDING


def test_message_id_is_found_unfolded_and_non_utf8_is_tolerated():
    collector = collect(
        b"Subject: =?iso-8859-1?q?caf=E9?=\r\n",
        b"X-Raw: caf\xe9\r\n",
        b"Message-ID:\r\n",
        b" <abc@example.org>\r\n",
        b"\r\n",
        b"Message-ID: <not-a-header@body>\r\n",
    )
    assert collector.problem is None
    assert collector.message_id_header == "<abc@example.org>"
    assert collect(b"Message-Id: <\xff@x>\r\n", b"\r\n").message_id_header == "<\ufffd@x>"
    assert collect(b"Subject: none\r\n", b"\r\n").message_id_header is None


def info(**overrides) -> ReceivedInfo:
    values = {
        "helo": "mail.example.org",
        "client_ip": "192.0.2.10",
        "client_name": "mail.example.org",
        "server_name": "mx.ac-montpellier.fr",
        "protocol": "ESMTPS",
        "message_id": "0" * 32,
        "recipients": ("camille.martin@ac-montpellier.fr",),
        "received_at": dt.datetime(2026, 11, 26, 14, 5, tzinfo=dt.UTC),
        "tls": "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384",
    }
    values.update(overrides)
    return ReceivedInfo(**values)


def test_received_header_has_the_rfc5321_form():
    header = received_header(info())
    assert header == (
        b"Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n"
        b"\tby mx.ac-montpellier.fr (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
        b"\twith ESMTPS id " + b"0" * 32 + b"\r\n"
        b"\tfor <camille.martin@ac-montpellier.fr>; Thu, 26 Nov 2026 14:05:00 +0000\r\n"
    )
    assert all(len(line) <= 998 for line in header.split(b"\r\n"))


def test_received_header_hides_recipients_when_there_are_several():
    header = received_header(info(recipients=("a@x.fr", "b@x.fr"), tls=None, client_name=None))
    assert b"for <" not in header
    assert b"(unknown [192.0.2.10])" in header
    assert header.endswith(b";\r\n\tThu, 26 Nov 2026 14:05:00 +0000\r\n")


def test_a_hostile_helo_cannot_shape_the_header():
    header = received_header(info(helo="evil (spoof) ; by\tx é"))
    first = header.split(b"\r\n")[0]
    assert first == b"Received: from evil??spoof????by?x?? (mail.example.org [192.0.2.10])"


def test_address_literals_and_protocol_names():
    assert address_literal("192.0.2.1") == "[192.0.2.1]"
    assert address_literal("2001:db8::1") == "[IPv6:2001:db8::1]"
    assert protocol_name(extended=False, tls=False, authenticated=False, smtputf8=False) == "SMTP"
    assert protocol_name(extended=True, tls=False, authenticated=False, smtputf8=False) == "ESMTP"
    assert protocol_name(extended=True, tls=True, authenticated=True, smtputf8=False) == "ESMTPSA"
    assert protocol_name(extended=True, tls=True, authenticated=False, smtputf8=True) == "UTF8SMTPS"


def test_stored_message_is_received_then_trace_then_the_original():
    stored = stored_message(info(), "f" * 32, b"Subject: x\r\n\r\nbody\r\n")
    assert stored.startswith(b"Received: from ")
    assert trace_header("f" * 32) == b"X-Trace-Id: " + b"f" * 32 + b"\r\n"
    assert stored.endswith(b"X-Trace-Id: " + b"f" * 32 + b"\r\nSubject: x\r\n\r\nbody\r\n")


@pytest.mark.parametrize(
    "block",
    [
        b"Subject: hi\r\nMessage-ID:\r\n <id@x>\r\n\r\nbody\r\nmore body\r\n",
        b"Subject: hi\r\n\r\n" + b"plain line of text\r\n" * 300,
        b"Subject: hi\r\n\r\nbody\r\n..dot\r\n.\r\n",
        b"Subject: hi\r\n\r\nbody\nbare\r\n",
        b"Subject: hi\r\n\r\nbody\rbare\r\n",
        b"Subject: hi\r\n\r\nnul\x00\r\n",
        b"Subject: hi\r\n\r\n" + b"a" * 998 + b"\r\n." + b"b" * 998 + b"\r\n",
        b"Subject: hi\r\n\r\n" + b"a" * 999 + b"\r\n",
        b"X: " + b"h" * 900 + b"\r\n" + b"Y: " + b"h" * 900 + b"\r\n\r\nbody\r\n",
        b"Subject: hi\r\n\r\n" + b"big body line\r\n" * 100,
    ],
)
def test_feed_lines_is_feed_line_on_each_line(block):
    one_by_one = collect(
        *[line + b"\r\n" for line in block[:-2].split(b"\r\n")], max_bytes=5000, max_header_bytes=1500
    )
    together = DataCollector(5000, 1500)
    together.feed_lines(block)
    assert together.problem == one_by_one.problem
    assert together.size == one_by_one.size
    assert together.header_bytes == one_by_one.header_bytes
    assert together.message_id_header == one_by_one.message_id_header
    if together.problem is None:
        assert together.content() == one_by_one.content()
