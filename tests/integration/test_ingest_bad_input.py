"""Hostile and malformed input against ingest's real servers: every case gets a clear SMTP reply, the
server keeps serving other clients, and nothing is half-delivered (no blob, no event).

Smuggling attempts go over raw sockets: smtplib would normalise their line endings.
"""

# The fixtures come from tests/smtp_helpers.py; ruff sees the test arguments as redefining them.
# ruff: noqa: F811

from __future__ import annotations

import smtplib
import threading
import time

import pytest

from ingest import codes
from ingest.server import IngestLimits
from tests.smtp_helpers import (  # noqa: F401 - fixtures
    CAMILLE,
    DEFAULT_LIMITS,
    RawClient,
    blobs,
    directory,
    envelope,
    events,
    ingest,
    limits,
    publisher,
    stored_blob_ids,
    tls_folder,
)

CLEAN = b"From: a@example.org\r\nSubject: clean\r\n\r\nhello\r\n"


def send_raw(port: int, data: bytes) -> tuple[str, RawClient]:
    """Open a session, send `data` after DATA's 354, return the reply and the still-open client."""
    client = RawClient(port)
    envelope(client, "a@example.org", CAMILLE)
    assert client.command("DATA").startswith("354")
    client.send(data)
    return client.reply(), client


def assert_still_serving(port: int) -> None:
    """Another client gets a clean message accepted."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail("a@example.org", [CAMILLE], CLEAN) == {}


def assert_nothing_delivered(database, events) -> None:
    assert stored_blob_ids(database) == []
    assert database["blobs.chunks"].count_documents({}) == 0
    assert events.get(timeout=0.3) is None


SMUGGLED = (
    b"MAIL FROM:<ceo@ac-montpellier.fr>\r\nRCPT TO:<" + CAMILLE.encode() + b">\r\nDATA\r\n"
    b"From: ceo@ac-montpellier.fr\r\nSubject: smuggled\r\n\r\nwire the money\r\n"
)


@pytest.mark.parametrize(
    "end_of_data",
    [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n"],
    ids=["LF.LF", "LF.CRLF", "CR.CR", "CRLF.LF"],
)
def test_smuggling_attempts_are_refused_whole(ingest, database, events, end_of_data):
    data = b"From: a@example.org\r\nSubject: first\r\n\r\nhello" + end_of_data + SMUGGLED + b"\r\n.\r\n"
    reply, client = send_raw(ingest.mx_port, data)
    assert reply == codes.BARE_LINE_ENDING
    # The session is still usable and in a clean state: the smuggled commands were never run.
    assert client.command("RCPT TO:<" + CAMILLE + ">").startswith("503")
    assert client.command("NOOP").startswith("250")
    client.close()
    assert_nothing_delivered(database, events)
    assert_still_serving(ingest.mx_port)


@pytest.mark.parametrize("length", [999, 1001, 5000])
def test_lines_over_998_octets_are_refused(ingest, database, events, length):
    reply, client = send_raw(ingest.mx_port, b"Subject: long\r\n\r\n" + b"a" * length + b"\r\n.\r\n")
    assert reply == codes.LINE_TOO_LONG
    client.close()
    assert_nothing_delivered(database, events)
    assert_still_serving(ingest.mx_port)


def test_a_998_octet_line_is_accepted(ingest, events):
    reply, client = send_raw(ingest.mx_port, b"Subject: limit\r\n\r\n" + b"a" * 998 + b"\r\n.\r\n")
    assert reply.startswith("250 2.0.0")
    client.close()


def test_nul_bytes_are_refused(ingest, database, events):
    reply, client = send_raw(ingest.mx_port, b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
    assert reply == codes.NUL_IN_MESSAGE
    client.close()
    assert_nothing_delivered(database, events)


@pytest.mark.parametrize("folded", [False, True], ids=["many-fields", "one-folded-field"])
def test_a_200_kb_header_is_refused(ingest, database, events, folded):
    if folded:
        header = b"X-Big: start\r\n" + b"".join(b"\tfold " + b"x" * 900 + b"\r\n" for _ in range(230))
    else:
        header = b"".join(b"X-Filler-%d: " % n + b"x" * 900 + b"\r\n" for n in range(220))
    assert len(header) > 200_000
    reply, client = send_raw(ingest.mx_port, header + b"\r\nbody\r\n.\r\n")
    assert reply == codes.HEADER_TOO_BIG
    client.close()
    assert_nothing_delivered(database, events)
    assert_still_serving(ingest.mx_port)


def nested_mime(depth: int) -> bytes:
    lines = [b"From: a@example.org", b"Subject: nested", b"MIME-Version: 1.0"]
    for level in range(depth):
        lines += [b'Content-Type: multipart/mixed; boundary="b%d"' % level, b"", b"--b%d" % level]
    lines += [b"Content-Type: text/plain", b"", b"deep inside"]
    lines += [b"--b%d--" % level for level in reversed(range(depth))]
    return b"\r\n".join(lines) + b"\r\n"


def test_mime_nested_500_deep_is_accepted_quickly_without_parsing(ingest, blobs, events):
    started = time.monotonic()
    reply, client = send_raw(ingest.mx_port, nested_mime(500) + b".\r\n")
    assert reply.startswith("250 2.0.0"), reply
    assert time.monotonic() - started < 10  # generous: ingest does not parse MIME
    client.close()
    payload = events.get()["payload"]
    assert blobs.get(payload["message_id"]).endswith(nested_mime(500))


def test_unterminated_boundaries_are_accepted_as_they_are(ingest, blobs, events):
    message = (
        b"From: a@example.org\r\nSubject: open\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
        b"--never-closed\r\nContent-Type: text/plain\r\n\r\nno closing boundary\r\n"
    )
    reply, client = send_raw(ingest.mx_port, message + b".\r\n")
    assert reply.startswith("250 2.0.0")
    client.close()
    assert blobs.get(events.get()["payload"]["message_id"]).endswith(message)


def test_non_utf8_headers_are_stored_byte_for_byte(ingest, blobs, events):
    message = b"From: caf\xe9@example.org\r\nSubject: r\xe9union \xff\xfe\r\nMessage-ID: <\xe9t\xe9@x>\r\n\r\ncorps\r\n"
    reply, client = send_raw(ingest.mx_port, message + b".\r\n")
    assert reply.startswith("250 2.0.0")
    client.close()
    event = events.get()
    assert event["payload"]["message_id_header"] == "<\ufffdt\ufffd@x>"
    assert blobs.get(event["payload"]["message_id"]).endswith(message)


@pytest.mark.parametrize(
    "limits",
    [IngestLimits(max_message_bytes=1024 * 1024, session_deadline=60, idle_timeout=30)],
    indirect=True,
)
def test_an_oversized_message_is_refused_and_the_session_goes_on(ingest, database, events):
    line = b"y" * 998 + b"\r\n"
    reply, client = send_raw(ingest.mx_port, b"Subject: big\r\n\r\n" + line * 1600 + b".\r\n")
    assert reply == codes.MESSAGE_TOO_BIG
    assert_nothing_delivered(database, events)
    # SIZE declared up front is refused at MAIL, before any data is sent.
    assert client.command("MAIL FROM:<a@example.org> SIZE=2000000") == codes.MESSAGE_TOO_BIG
    # The same session can still send a message that fits.
    envelope_reply = client.command("MAIL FROM:<a@example.org> SIZE=100")
    assert envelope_reply.startswith("250")
    assert client.command(f"RCPT TO:<{CAMILLE}>").startswith("250")
    assert client.command("DATA").startswith("354")
    assert client.command(CLEAN + b".").startswith("250 2.0.0")
    client.close()


def test_an_over_long_command_line_is_refused(ingest):
    client = RawClient(ingest.mx_port)
    client.command("EHLO client.example.org")
    assert client.command("MAIL FROM:<" + "a" * 2000 + "@example.org>").startswith("500 5.5.2")
    assert client.command("NOOP").startswith("250")
    client.close()


@pytest.mark.parametrize("limits", [IngestLimits(session_deadline=2.0, idle_timeout=30)], indirect=True)
def test_a_slow_loris_is_cut_by_the_session_deadline_while_others_are_served(ingest, database):
    loris = RawClient(ingest.mx_port)
    received: list[str] = []
    stop = threading.Event()

    def trickle():
        for byte in b"EHLO slow.example.org\r\nMAIL FROM:<slow@example.org>\r\n":
            if stop.is_set():
                return
            try:
                loris.send(bytes([byte]))
            except OSError:
                return
            time.sleep(1)

    def listen():
        try:
            while reply := loris.reply():
                received.append(reply)
        except OSError:
            pass

    started = time.monotonic()
    threads = [threading.Thread(target=trickle, daemon=True), threading.Thread(target=listen, daemon=True)]
    for thread in threads:
        thread.start()
    assert_still_serving(ingest.mx_port)  # meanwhile, a normal client is served at once
    threads[1].join(15)
    stop.set()
    elapsed = time.monotonic() - started
    assert received[-1] == codes.SESSION_DEADLINE
    assert 1.5 < elapsed < 10
    loris.close()


@pytest.mark.parametrize("limits", [IngestLimits(session_deadline=60, idle_timeout=1.0)], indirect=True)
def test_an_idle_client_gets_421_and_is_closed(ingest):
    client = RawClient(ingest.mx_port)
    client.command("EHLO idle.example.org")
    assert client.reply() == codes.IDLE_TIMEOUT
    assert client.closed_by_server()
    client.close()


def test_default_limits_match_the_brief():
    assert DEFAULT_LIMITS.max_recipients == IngestLimits().max_recipients == 1000
    assert IngestLimits().max_message_bytes == 25 * 1024 * 1024
