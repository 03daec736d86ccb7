"""The pure parts of receiving a message: checking DATA line by line, and the headers ingest prepends.

`DataCollector` is fed the DATA lines exactly as they arrived (dot-stuffed, each ending with CRLF; the
final "." line is not fed). It enforces RFC 5321's limits and refuses what could smuggle a second
message past a less careful server downstream:

- every line must end with CRLF, and no CR or LF may appear anywhere else ("bare" CR/LF);
- no NUL octet;
- no line longer than 998 octets plus CRLF once the transparency dot is removed (RFC 5321 §4.5.3.1.6);
- the whole message and its header section stay under their size limits.

The first problem found (by `PROBLEM_RANK`) is kept; from then on the collector drops the data it had
and only counts, so a refused message costs no memory while the client finishes sending it. A refused
message is refused whole: nothing of it is stored.

`received_header` and `trace_header` build the two header fields stored in front of the message.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass

from ingest import codes

#: Longest line of text, without its CRLF (RFC 5321 §4.5.3.1.6, RFC 5322 §2.1.1).
MAX_LINE_OCTETS = 998

#: Problems in order of importance: a message with several reports the first of these it has.
PROBLEM_RANK = (
    codes.BARE_LINE_ENDING,
    codes.NUL_IN_MESSAGE,
    codes.LINE_TOO_LONG,
    codes.HEADER_TOO_BIG,
    codes.MESSAGE_TOO_BIG,
)

# RFC 5322 field name: printable ASCII except ":"; a header line is "name:" or a folded continuation.
_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
_MESSAGE_ID = re.compile(rb"^message-id:", re.IGNORECASE)
_BARE_OR_NUL = re.compile(rb"[\r\n\x00]")


def _plain_lines(block: bytes) -> bool:
    """True when `block` (lines ending with CRLF) has no dot-stuffed line, no CR or LF outside a CRLF
    pair, no NUL and no line over MAX_LINE_OCTETS: nothing in it for `DataCollector` to look at."""
    pairs = block.count(b"\r\n")
    return (
        not block.startswith(b".")
        and b"\r\n." not in block
        and b"\x00" not in block
        and block.count(b"\r") == pairs
        and block.count(b"\n") == pairs
        and (len(block) <= MAX_LINE_OCTETS + 2 or max(map(len, block.split(b"\r\n"))) <= MAX_LINE_OCTETS)
    )


class DataCollector:
    """Accumulates and checks the lines of one DATA transfer (see the module docstring)."""

    def __init__(self, max_bytes: int, max_header_bytes: int):
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes
        self.size = 0
        self.header_bytes = 0
        self.problem: str | None = None
        self._chunks: list[bytes] = []
        self._in_headers = True
        self._message_id: list[bytes] | None = None
        self._in_message_id = False

    def feed_line(self, line: bytes) -> None:
        """One complete line as received, ending with CRLF (the end-of-data "." line excluded)."""
        self._feed_text(line[:-2] if line.endswith(b"\r\n") else line)

    def feed_lines(self, block: bytes) -> None:
        """Complete lines as received, each ending with CRLF: the same as `feed_line` on each in turn.

        Ordinary body text (past the header section, no problem found so far, no dot-stuffed line, no
        CR or LF outside a CRLF pair, no NUL, no over-long line) is checked and kept in one step.
        """
        start = 0
        while self._in_headers and start < len(block):
            end = block.index(b"\r\n", start) + 2
            self._feed_text(block[start : end - 2])
            start = end
        body = block[start:] if start else block
        if not body:
            return
        if self.problem is None and _plain_lines(body):
            self.size += len(body)
            if self.size > self.max_bytes:
                self._refuse(codes.MESSAGE_TOO_BIG)
            else:
                self._chunks.append(body)
            return
        for text in body[:-2].split(b"\r\n"):
            self._feed_text(text)

    def _feed_text(self, text: bytes) -> None:
        """One line without its CRLF."""
        if _BARE_OR_NUL.search(text):
            self._refuse(codes.BARE_LINE_ENDING if (b"\r" in text or b"\n" in text) else codes.NUL_IN_MESSAGE)
        if text.startswith(b"."):
            text = text[1:]  # RFC 5321 §4.5.2 transparency
        if len(text) > MAX_LINE_OCTETS:
            self._refuse(codes.LINE_TOO_LONG)
        self.size += len(text) + 2
        if self.size > self.max_bytes:
            self._refuse(codes.MESSAGE_TOO_BIG)
        if self._in_headers:
            self._header_line(text)
        if self.problem is None:
            self._chunks.append(text + b"\r\n")

    def feed_fragment(self, fragment: bytes) -> None:
        """Part of a line longer than the reader's limit: the message is refused, but keep looking for
        a worse problem (a bare CR or LF) so the reply names it."""
        if b"\r" in fragment or b"\n" in fragment:
            self._refuse(codes.BARE_LINE_ENDING)
        elif b"\x00" in fragment:
            self._refuse(codes.NUL_IN_MESSAGE)
        self._refuse(codes.LINE_TOO_LONG)
        self.size += len(fragment)

    def content(self) -> bytes:
        """The message as the client meant it (transparency dots removed), CRLF line endings."""
        if self.problem is not None:
            raise ValueError(f"the message was refused: {self.problem}")
        return b"".join(self._chunks)

    @property
    def message_id_header(self) -> str | None:
        """The Message-ID header's value, unfolded and decoded leniently (it should be ASCII)."""
        if not self._message_id:
            return None
        raw = b" ".join(part.strip() for part in self._message_id)
        value = raw.split(b":", 1)[1].strip()[:MAX_LINE_OCTETS]
        return value.decode("utf-8", errors="replace") or None

    def _header_line(self, text: bytes) -> None:
        if not text or not (text[:1] in (b" ", b"\t") or _FIELD.match(text)):
            # An empty line ends the header section; so does a line that cannot be a header, as in
            # Python's email parser (the rest is body).
            self._in_headers = False
            self._in_message_id = False
            return
        self.header_bytes += len(text) + 2
        if self.header_bytes > self.max_header_bytes:
            self._refuse(codes.HEADER_TOO_BIG)
        if text[:1] in (b" ", b"\t"):
            if self._in_message_id and self._message_id is not None:
                self._message_id.append(text)
            return
        self._in_message_id = False
        if self._message_id is None and _MESSAGE_ID.match(text):
            self._message_id = [text]
            self._in_message_id = True

    def _refuse(self, problem: str) -> None:
        if self.problem is None or PROBLEM_RANK.index(problem) < PROBLEM_RANK.index(self.problem):
            self.problem = problem
        self._chunks.clear()


@dataclass(frozen=True)
class ReceivedInfo:
    """What the Received header says about one transaction."""

    helo: str
    client_ip: str
    client_name: str | None
    server_name: str
    protocol: str
    message_id: str
    recipients: tuple[str, ...]
    received_at: dt.datetime
    tls: str | None = None


def protocol_name(extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The "with" keyword of a Received header (RFC 3848, RFC 6531): SMTP, ESMTP, ESMTPS, ESMTPSA…"""
    if not extended:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def _clean(text: str, limit: int = 255) -> str:
    """Printable ASCII only: a client's HELO must not be able to shape our header."""
    # Parentheses would open or close a comment, ";" would start the date: neither may come from outside.
    cleaned = "".join(ch if 0x21 <= ord(ch) <= 0x7E and ch not in "();\\" else "?" for ch in text)
    return cleaned[:limit] or "unknown"


def address_literal(ip: str) -> str:
    """An IP address as RFC 5321 §4.1.3 writes it: [192.0.2.1] or [IPv6:2001:db8::1]."""
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def received_header(info: ReceivedInfo) -> bytes:
    """The RFC 5321 §4.4 Received field, folded, ending with CRLF.

    The recipient is named only when there is exactly one: listing several would disclose Bcc
    recipients to each other.
    """
    name = _clean(info.client_name) if info.client_name else "unknown"
    lines = [
        f"Received: from {_clean(info.helo)} ({name} {address_literal(info.client_ip)})",
        f"\tby {_clean(info.server_name)}" + (f" (using {info.tls})" if info.tls else ""),
        f"\twith {info.protocol} id {info.message_id}",
    ]
    date = email.utils.format_datetime(info.received_at.astimezone(dt.UTC))
    if len(info.recipients) == 1:
        lines.append(f"\tfor <{info.recipients[0]}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", errors="surrogateescape")


def trace_header(trace_id: str) -> bytes:
    """The X-Trace-Id field that lets an operator follow the message through every service's logs."""
    return f"X-Trace-Id: {trace_id}\r\n".encode("ascii")


def stored_message(info: ReceivedInfo, trace_id: str, content: bytes) -> bytes:
    """What ingest stores: Received first (RFC 5321 §4.4 wants it at the top), then X-Trace-Id, then the
    message exactly as received."""
    return received_header(info) + trace_header(trace_id) + content
