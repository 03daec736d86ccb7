"""Robust parsing of raw RFC 5322 messages into what the spam features look at.

Parsing uses the stdlib `email` package with the `compat32` policy and decodes RFC 2047 encoded words and
charsets itself: `email.policy.default` builds a structured object for every header and was five times
slower on the corpus (1 ms per message against 0.2 ms), which alone would spend the whole budget of 1,000
messages per second. Every step tolerates broken input: unknown or lying charsets fall back to Latin-1,
undecodable base64 yields what could be decoded, a message without body gives an empty text.

Work is bounded whatever the input: only the first `MAX_RAW_BYTES` of a message are parsed and only the
first `MAX_TEXT_CHARS` of its text are analysed (`ParsedMessage.analysed_chars` says how much was), so a
10 MB message costs about as much as a 200 KB one.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.errors
import email.header
import email.policy
import email.quoprimime
import email.utils
import html
import re
from dataclasses import dataclass, field
from email.message import Message

from common.mailparse import message_from_bytes
from common.memo import remember_short

#: Bytes of a raw message that are parsed; the rest is ignored (attachments far down, huge bodies).
MAX_RAW_BYTES = 256 * 1024
#: Characters of decoded text (all text parts together) that are analysed.
MAX_TEXT_CHARS = 100_000
#: Parts of a MIME tree that are looked at.
MAX_PARTS = 100

#: Headers added by the people who collected the SpamAssassin corpus (their own filters, mail reader and
#: delivery path) or anonymised by them: they tell which mailbox a message was saved in, not what it is,
#: and would not generalise to the academy's mail. They are never turned into features (docs/spam.md).
COLLECTOR_HEADERS = frozenset(
    {
        "delivered-to",  # the collector's own addresses, anonymised (yyyy@, zzzz@, jm@)
        "received",  # the collector's fetchmail/Postfix hops come first; only the count is used
        "to",
        "cc",  # recipients were anonymised by the collector
        "x-keywords",
        "status",
        "x-status",  # flags of the collector's mail reader
        "delivery-date",
        "x-original-date",
        "x-uid",
        "content-length",
        "lines",
        "x-spam-status",
        "x-spam-level",
        "x-spam-flag",
        "x-spam-checker-version",
        "x-spam-report",
        "x-spam-score",  # verdicts of the collector's SpamAssassin
    }
)

#: Domains and mailbox names that the collector substituted for real ones when anonymising the corpus
#: (ham and spam alike went through them). Text mentioning them is blanked and addresses in them are
#: treated as unknown, so that the model cannot learn "the collector's address" as a signal.
_COLLECTOR_RE = re.compile(
    r"(?:spamassassin\.)?taint\.org|jmason\.org|netnoteinc\.com|slashnull\.org|\b(?:yyyy|zzzz)\b"
)
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_URL_RE = re.compile(r"""(?i)\b(?:https?://|www\.)[^\s<>"'()\[\]{}]{2,300}""")
_ANCHOR_RE = re.compile(r"""(?is)<a\s[^>]*?href\s*=\s*["']?([^"'\s>]+)[^>]*>(.{0,300}?)</a\s*>""")
_TAG_RE = re.compile(r"(?s)<[^>]{0,2000}>")
_DROP_RE = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_COMMENT_RE = re.compile(r"(?s)<!--.*?-->")
_IMG_RE = re.compile(r"(?i)<img\b")
_OPEN_TAG_RE = re.compile(r"<([A-Za-z][A-Za-z0-9]{0,10})\b([^>]{0,300})>")
_ATTRIBUTE_RE = re.compile(r"([A-Za-z-]{1,20})\s*=")
_FORM_RE = re.compile(r"(?i)<(form|input)\b")
_HOST_RE = re.compile(r"(?i)^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/?#]*@)?([^/:?#\s]+)")
_SPACE_RE = re.compile(r"\s+")


@dataclass
class ParsedMessage:
    """The parts of a message the spam features are computed from."""

    subject: str = ""
    from_display: str = ""
    from_address: str = ""
    reply_to_address: str = ""
    return_path: str = ""
    header_names: list[str] = field(default_factory=list)
    received_count: int = 0
    message_id: str = ""
    date: str = ""
    mailer: str = ""
    content_types: list[str] = field(default_factory=list)
    attachments: list[tuple[str, str]] = field(default_factory=list)  # (content type, file extension)
    charsets: list[str] = field(default_factory=list)
    text: str = ""  # plain text parts, then the visible text of HTML parts
    html_chars: int = 0
    plain_chars: int = 0
    links: list[tuple[str, str]] = field(default_factory=list)  # (url, anchor text or "")
    images: int = 0
    forms: int = 0
    html_tags: set[str] = field(default_factory=set)  # "font", "font@color", …
    defects: int = 0
    raw_bytes: int = 0
    truncated: bool = False
    analysed_chars: int = 0

    @property
    def from_domain(self) -> str:
        """Domain of the From address, lower-cased ("" when missing)."""
        return domain_of(self.from_address)


def domain_of(address: str) -> str:
    """The lower-cased domain of an e-mail address ("" when there is none)."""
    _, _, domain = address.rpartition("@")
    return domain.strip().strip(">").lower()


def host_of(url: str) -> str:
    """The lower-cased host of a URL ("" when there is none)."""
    match = _HOST_RE.match(url.strip())
    return match.group(1).lower().rstrip(".") if match else ""


#: Substrings that every match of `_COLLECTOR_RE` contains: their absence (a few fast substring searches)
#: proves that the expression, which has no literal prefix to skip ahead on, finds nothing.
_COLLECTOR_MARKS = ("taint.org", "jmason.org", "netnoteinc.com", "slashnull.org", "yyyy", "zzzz")


def scrub_collector(text: str) -> str:
    """`text` with the corpus collector's anonymised addresses and domains removed."""
    if not text or not any(mark in text for mark in _COLLECTOR_MARKS):
        return text
    return _COLLECTOR_RE.sub(" ", text)


def _decode_word(match: re.Match) -> str:
    charset, encoding, payload = match.groups()
    try:
        if encoding.lower() == "q":
            data = email.quoprimime.header_decode(payload).encode("latin-1", "replace")
        else:
            data = base64.b64decode(payload + "===", validate=False)
    except (ValueError, binascii.Error):
        return match.group(0)
    return decode_bytes(data, charset)


def decode_header_value(value: object) -> str:
    """A header value with RFC 2047 encoded words decoded; never raises."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        value = str(value)
    text = str(value)
    if "=?" not in text:
        return _SPACE_RE.sub(" ", text).strip()
    try:
        pieces = email.header.decode_header(text)
    except (ValueError, LookupError, AssertionError, email.errors.HeaderParseError):
        # One broken word spoils the whole header for the stdlib: decode the words one by one instead.
        return _SPACE_RE.sub(" ", _ENCODED_WORD_RE.sub(_decode_word, text)).strip()
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return _SPACE_RE.sub(" ", "".join(out)).strip()


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes decoded with `charset`, falling back to UTF-8 then Latin-1 (which cannot fail)."""
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate.strip().strip('"').lower())
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("latin-1")


def html_to_text(markup: str) -> str:
    """The visible text of an HTML fragment (a fast approximation: no DOM is built)."""
    markup = _COMMENT_RE.sub(" ", markup)
    markup = _DROP_RE.sub(" ", markup)
    return html.unescape(_TAG_RE.sub(" ", markup))


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, AssertionError, LookupError):
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    return raw.encode("latin-1", "replace") if isinstance(raw, str) else b""


def _extension(filename: str) -> str:
    _, dot, ext = filename.rpartition(".")
    return ext.lower()[:10] if dot and ext.isalnum() else ""


def _may_hold_url(text: str) -> bool:
    """False when `_URL_RE` cannot match `text` (no "http" nor "www.", in any case): the expression is
    tried at every word boundary otherwise, a tenth of a millisecond on a 4 KB text without links."""
    lowered = text.lower()
    return "http" in lowered or "www." in lowered


def _address(address: str) -> str:
    address = address.strip().lower()
    return "" if _COLLECTOR_RE.search(address) else address


#: `email.utils.parseaddr` of a decoded header value, remembered for short values (`common.memo`): the
#: same senders come back from message to message.
_parse_address = remember_short(email.utils.parseaddr)


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw message bytes (anything: empty, binary, broken) into a ParsedMessage."""
    parsed = ParsedMessage(raw_bytes=len(raw))
    if len(raw) > MAX_RAW_BYTES:
        raw = raw[:MAX_RAW_BYTES]
        parsed.truncated = True
    if raw.startswith(b"From "):  # mbox separator line written by the collector's mail store
        _, _, raw = raw.partition(b"\n")
    message = message_from_bytes(raw, email.policy.compat32)
    parsed.defects = len(message.defects)
    names = []
    for name in message.keys():
        lowered = name.lower()
        if lowered == "received":
            parsed.received_count += 1
        if lowered not in COLLECTOR_HEADERS:
            names.append(lowered)
    parsed.header_names = names
    parsed.subject = scrub_collector(decode_header_value(message.get("subject")))
    display, address = _parse_address(decode_header_value(message.get("from")))
    parsed.from_display, parsed.from_address = scrub_collector(display), _address(address)
    parsed.reply_to_address = _address(_parse_address(decode_header_value(message.get("reply-to")))[1])
    parsed.return_path = _address(_parse_address(decode_header_value(message.get("return-path")))[1])
    parsed.message_id = scrub_collector(decode_header_value(message.get("message-id")))
    parsed.date = decode_header_value(message.get("date"))
    parsed.mailer = decode_header_value(message.get("x-mailer") or message.get("user-agent"))

    plain: list[str] = []
    markup: list[str] = []
    budget = MAX_TEXT_CHARS
    for index, part in enumerate(message.walk()):
        if index >= MAX_PARTS:
            break
        ctype = part.get_content_type()
        parsed.content_types.append(ctype)
        parsed.defects += len(part.defects)
        if part.is_multipart():
            continue
        filename = decode_header_value(part.get_filename() or part.get_param("name") or "")
        disposition = (part.get("content-disposition") or "").split(";")[0].strip().lower()
        charset = part.get_content_charset()
        if charset:
            parsed.charsets.append(charset.lower()[:30])
        if filename or disposition == "attachment" or part.get_content_maintype() not in ("text",):
            parsed.attachments.append((ctype, _extension(filename)))
            continue
        if budget <= 0:
            continue
        text = decode_bytes(_payload_bytes(part)[: budget * 4], charset)[:budget]
        budget -= len(text)
        if ctype == "text/html":
            parsed.html_chars += len(text)
            markup.append(text)
        else:
            parsed.plain_chars += len(text)
            plain.append(text)

    visible = []
    for fragment in markup:
        parsed.images += len(_IMG_RE.findall(fragment))
        parsed.forms += len(_FORM_RE.findall(fragment))
        for tag, attributes in _OPEN_TAG_RE.findall(fragment[:MAX_TEXT_CHARS]):
            tag = tag.lower()
            parsed.html_tags.add(tag)
            parsed.html_tags.update(f"{tag}@{name.lower()}" for name in _ATTRIBUTE_RE.findall(attributes))
        for url, anchor in _ANCHOR_RE.findall(fragment):
            parsed.links.append((html.unescape(url), html_to_text(anchor).strip()))
        visible.append(html_to_text(fragment))
    text = scrub_collector("\n".join(plain + visible))
    if not markup and _may_hold_url(text):
        parsed.links.extend((url, "") for url in _URL_RE.findall(text)[:200])
    parsed.text = text[:MAX_TEXT_CHARS]
    parsed.analysed_chars = len(parsed.text)
    return parsed
