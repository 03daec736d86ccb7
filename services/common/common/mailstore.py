"""The mailbox store: one entry per message per mailbox folder, over one stored copy of the raw message.

delivery writes entries; the webmail reads and updates them (flags, folders). An entry carries what a
message list shows — sender, recipients, subject, date, size, snippet, attachments — so listing a folder
never re-parses a message. The raw message stays in the blob store under `message_id`, stored once
however many recipients it has.

An entry's id is derived from (message, mailbox, copy), so delivering the same message twice to the same
mailbox is a no-op: that is delivery's idempotency key. "The same message" is the same stored copy, or
the same Message-ID header from the same envelope sender (`delivery_key`), so that a sender's retry after a
lost 250 does not give the recipient a second copy.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import BulkWriteError

#: Folders every mailbox has, by their internal names (the webmail shows French labels).
INBOX, SENT, DRAFTS, JUNK, QUARANTINE, TRASH = "INBOX", "Sent", "Drafts", "Junk", "Quarantine", "Trash"
SYSTEM_FOLDERS = (INBOX, SENT, DRAFTS, JUNK, QUARANTINE, TRASH)

SNIPPET_LENGTH = 200
#: How much of a text part is read to build the snippet: enough for 200 characters of text.
_SNIPPET_SOURCE = 20_000

INDEXES = {
    "mailbox_entries": [
        IndexModel(
            [("mailbox", ASCENDING), ("folder", ASCENDING), ("received_at", DESCENDING)],
            name="folder_listing",
        ),
        IndexModel([("mailbox", ASCENDING), ("message_id", ASCENDING)], name="mailbox_message"),
        IndexModel([("mailbox", ASCENDING), ("folder", ASCENDING), ("flags.seen", ASCENDING)], name="unread"),
    ],
}


@dataclass(frozen=True)
class Address:
    """A display name and an address."""

    name: str
    address: str


@dataclass(frozen=True)
class Attachment:
    """What the list and the reader show of an attachment; the bytes stay in the raw message."""

    filename: str
    content_type: str
    size: int
    part: int


@dataclass(frozen=True)
class MessageSummary:
    """The fields of a message a mailbox entry carries, parsed once per message."""

    sender: Address | None
    to: list[Address]
    cc: list[Address]
    subject: str
    date: dt.datetime | None
    message_id_header: str
    snippet: str
    attachments: list[Attachment] = field(default_factory=list)

    def to_document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["from"] = doc.pop("sender")
        doc["has_attachments"] = bool(self.attachments)
        return doc


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - a malformed header must not stop delivery
        return ""
    return str(value).strip() if value is not None else ""


def _addresses(message, name: str) -> list[Address]:
    try:
        values = message.get_all(name) or []
        pairs = email.utils.getaddresses([str(v) for v in values])
    except Exception:  # noqa: BLE001
        return []
    return [Address(n.strip(), a.strip().lower()) for n, a in pairs if a.strip()]


def _date(message) -> dt.datetime | None:
    try:
        value = message.get("Date")
        moment = value.datetime if value is not None and hasattr(value, "datetime") else None
    except Exception:  # noqa: BLE001
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.I | re.S)
_SPACES = re.compile(r"\s+")


def _text_of(part) -> str:
    try:
        payload = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload[:_SNIPPET_SOURCE].decode(charset, errors="replace")
    except LookupError:
        text = payload[:_SNIPPET_SOURCE].decode("utf-8", errors="replace")
    if part.get_content_subtype() == "html":
        import html

        text = html.unescape(_TAGS.sub(" ", text))
    return text


def summarize(raw: bytes) -> MessageSummary:
    """Parse a raw RFC 5322 message into the fields of a mailbox entry; never raises on bad input."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    senders = _addresses(message, "From")
    snippet_source, attachments = "", []
    html_fallback = ""
    for index, part in enumerate(message.walk()):
        if part.is_multipart():
            continue
        filename = None
        try:
            filename = part.get_filename()
            disposition = part.get_content_disposition()
        except Exception:  # noqa: BLE001
            disposition = None
        if filename or disposition == "attachment":
            try:
                size = len(part.get_payload(decode=True) or b"")
            except Exception:  # noqa: BLE001
                size = 0
            attachments.append(Attachment(filename or "sans-nom", part.get_content_type(), size, index))
            continue
        if part.get_content_maintype() != "text":
            continue
        if not snippet_source and part.get_content_subtype() == "plain":
            snippet_source = _text_of(part)
        elif not html_fallback and part.get_content_subtype() == "html":
            html_fallback = _text_of(part)
    snippet = _SPACES.sub(" ", snippet_source or html_fallback).strip()[:SNIPPET_LENGTH]
    return MessageSummary(
        sender=senders[0] if senders else None,
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        subject=_header(message, "Subject"),
        date=_date(message),
        message_id_header=_header(message, "Message-ID"),
        snippet=snippet,
        attachments=attachments,
    )


def delivery_key(message_id: str, message_id_header: str, envelope_sender: str) -> str:
    """What identifies "the same message" for duplicate suppression in a mailbox.

    A sender whose SMTP session broke after ingest had accepted its message, but before it read the
    250, sends the message again: a second stored copy with a new internal id, but the same Message-ID
    header and envelope sender. Keying entries on those two (like Cyrus IMAP's duplicate delivery
    suppression) files it once. A message without a Message-ID header is keyed on its internal id.
    """
    header = message_id_header.strip()
    if not header:
        return message_id
    return f"mid:{envelope_sender.lower()}\0{header}"


def entry_id(message_id: str, mailbox: str, copy: str) -> str:
    """The id of a mailbox entry: stable for (message, mailbox, copy), so a second delivery is a no-op."""
    return hashlib.sha256(f"{message_id}\0{mailbox}\0{copy}".encode()).hexdigest()[:32]


def insert_entries(db: Database, entries: Iterable[dict[str, Any]]) -> set[str]:
    """Insert mailbox entries, ignoring those already there; returns the ids newly inserted."""
    entries = list(entries)
    if not entries:
        return set()
    try:
        db.mailbox_entries.insert_many(entries, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != 11000 for error in errors):
            raise
        duplicates = {entries[error["index"]]["_id"] for error in errors}
        return {entry["_id"] for entry in entries} - duplicates
    return {entry["_id"] for entry in entries}


def add_usage(db: Database, entries: Iterable[dict[str, Any]]) -> None:
    """Count the size of newly stored entries against their mailboxes (`mailboxes.used_bytes`)."""
    totals: dict[str, int] = {}
    for entry in entries:
        totals[entry["mailbox"]] = totals.get(entry["mailbox"], 0) + int(entry.get("size", 0))
    for mailbox, size in totals.items():
        db.mailboxes.update_one({"_id": mailbox}, {"$inc": {"used_bytes": size}}, upsert=True)


def over_quota(db: Database, mailboxes: list[str], size: int, default_quota: int) -> set[str]:
    """The mailboxes among `mailboxes` that `size` more bytes would take over their quota.

    Usage is a counter kept by `add_usage` (and lowered when mail is deleted for good): an approximation
    under concurrent deliveries, which is what a quota needs, not an exact sum.
    """
    if not mailboxes:
        return set()
    full = set()
    for mailbox in mailboxes:
        # One `_id` lookup each: FerretDB v1 scans the collection for `$in` (docs/ARCHITECTURE.md).
        doc = db.mailboxes.find_one({"_id": mailbox}) or {}
        quota = doc.get("quota_bytes") or default_quota
        if doc.get("used_bytes", 0) + size > quota:
            full.add(mailbox)
    return full
