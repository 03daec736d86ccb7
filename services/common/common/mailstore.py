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
import email.headerregistry
import email.policy
import email.utils
import functools
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from common.db import insert_outcomes
from common.groupcommit import GroupCommit
from common.mailparse import message_from_bytes
from common.memo import remember_short

#: Folders every mailbox has, by their internal names (the webmail shows French labels).
INBOX, SENT, DRAFTS, JUNK, QUARANTINE, TRASH = "INBOX", "Sent", "Drafts", "Junk", "Quarantine", "Trash"
SYSTEM_FOLDERS = (INBOX, SENT, DRAFTS, JUNK, QUARANTINE, TRASH)

SNIPPET_LENGTH = 200
#: Length of `search_text`: the folded words the webmail's search matches (see `fold`).
SEARCH_TEXT_LENGTH = 2_000
#: How much of a text part is read to build the snippet: enough for 200 characters of text.
_SNIPPET_SOURCE = 20_000

INDEXES = {
    "mailbox_entries": [
        # a folder's list, newest first; `_id` breaks ties, so that a page is a walk along the index
        IndexModel(
            [("mailbox", ASCENDING), ("folder", ASCENDING), ("received_at", DESCENDING), ("_id", DESCENDING)],
            name="folder_by_date",
        ),
        IndexModel([("mailbox", ASCENDING), ("message_id", ASCENDING)], name="mailbox_message"),
        IndexModel(
            [("mailbox", ASCENDING), ("folder", ASCENDING), ("flags.seen", ASCENDING)], name="folder_unread"
        ),
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
    #: lower-cased, accent-folded words of the subject, sender, attachment names and body text, capped
    #: at SEARCH_TEXT_LENGTH: the webmail searches it (no `$text` on FerretDB, bodies are not in entries)
    search_text: str = ""
    #: the sender's name and address, and the subject, folded the same way: the search's "De" and
    #: "Objet" criteria match them as plain substrings, which the database can test on its indexes' rows
    search_from: str = ""
    search_subject: str = ""

    def to_document(self) -> dict[str, Any]:
        """The entry's fields as `dataclasses.asdict` would give them, with `sender` renamed `from` (last).

        Written out because `asdict` walks every value recursively and deep-copies the leaves: for the
        fields `summarize` fills (strings, a datetime, lists of `Address` and `Attachment`) this builds
        the same dictionary, with the same keys in the same order, in a fraction of the time. The datetime
        is shared instead of copied: it is immutable.
        """
        sender = self.sender
        attachments = self.attachments
        return {
            "to": [{"name": a.name, "address": a.address} for a in self.to],
            "cc": [{"name": a.name, "address": a.address} for a in self.cc],
            "subject": self.subject,
            "date": self.date,
            "message_id_header": self.message_id_header,
            "snippet": self.snippet,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size, "part": a.part}
                for a in attachments
            ],
            "search_text": self.search_text,
            "search_from": self.search_from,
            "search_subject": self.search_subject,
            "from": None if sender is None else {"name": sender.name, "address": sender.address},
            "has_attachments": bool(attachments),
        }


def _raw_header(message, name: str) -> str | None:
    """The first `name` header of `message` as `policy.default` hands it to its header factory (line
    breaks removed); None if there is none, or if it is not a plain string (a header object set by
    program, which `message.get` returns as it is)."""
    name = name.lower()
    for key, value in message.raw_items():
        if key.lower() == name:
            return value.replace("\r", "").replace("\n", "") if type(value) is str else None
    return None


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
#: Header values that `policy.default` parses back to themselves, so that `_header` can skip the parse
#: (the header registry's parsers are the slowest part of reading a header, and a Subject or a Message-ID
#: is new with every message, out of reach of `_RememberingHeaderFactory`): printable ASCII without an
#: encoded word for an unstructured header (the Subject), and `<dot-atom-text@dot-atom-text>` for a
#: Message-ID, whose parse keeps nothing of what follows the first identifier.
_VERBATIM = {
    "subject": re.compile(r"(?!.*=\?)[\t\x20-\x7e]*\Z", re.S),
    "message-id": re.compile(rf"<{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*>\Z"),
}


def _header(message, name: str) -> str:
    verbatim = _VERBATIM.get(name.lower())
    try:
        raw = _raw_header(message, name) if verbatim is not None else None
        if raw is not None and verbatim.match(raw):
            return raw.strip()
        value = message.get(name)
    except Exception:  # noqa: BLE001 - a malformed header must not stop delivery
        return ""
    return str(value).strip() if value is not None else ""


def _addresses(message, name: str) -> list[Address]:
    try:
        values = tuple(str(v) for v in message.get_all(name) or [])
        if sum(map(len, values)) > 1024:  # not worth remembering (see _RememberingHeaderFactory)
            return list(_parse_addresses.__wrapped__(values))
        return list(_parse_addresses(values))
    except Exception:  # noqa: BLE001
        return []


@functools.lru_cache(maxsize=4096)
def _parse_addresses(values: tuple[str, ...]) -> tuple[Address, ...]:
    """The addresses of the header values `values`, remembered: the same From and To recur from message
    to message, and `getaddresses` parses them in Python, character by character. The result depends on
    the values alone, and `Address` is immutable, so sharing it changes nothing."""
    pairs = email.utils.getaddresses(values)
    return tuple(Address(n.strip(), a.strip().lower()) for n, a in pairs if a.strip())


def _date(message) -> dt.datetime | None:
    try:
        raw = _raw_header(message, "Date")
        if raw is not None:
            # what `policy.default`'s DateHeader does with the value to find its `datetime`, without the
            # rest of the header object (formatting the date again, and parsing that)
            moment = email.utils.parsedate_to_datetime(raw) if raw else None
        else:
            value = message.get("Date")
            moment = value.datetime if value is not None and hasattr(value, "datetime") else None
    except Exception:  # noqa: BLE001 - a ValueError is what DateHeader makes a defect, `datetime` None
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.I | re.S)


def _text_of(part, subtype: str) -> str:
    """The start of the text of `part`, whose content subtype is `subtype` (a tag-less text if html)."""
    try:
        payload = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload[:_SNIPPET_SOURCE].decode(charset, errors="replace")
    except LookupError:
        text = payload[:_SNIPPET_SOURCE].decode("utf-8", errors="replace")
    if subtype == "html":
        import html

        text = html.unescape(_TAGS.sub(" ", text))
    return text


#: A word as `fold` keeps it (letters, digits, and the @ . + - of addresses).
_WORD = re.compile(r"[\w@.+-]+")


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _strip_combining(text: str) -> str:
    """`text` without its combining characters (the accents NFKD separated from their letters).

    The marks present are found among the text's distinct non-ASCII characters and removed with one
    small character class: three times faster on French text than `str.translate` with a table of all
    the marks (a dictionary lookup per character)."""
    marks = sorted(c for c in set(_NON_ASCII.findall(text)) if unicodedata.combining(c))
    return re.sub(f"[{''.join(marks)}]", "", text) if marks else text


def _fold_text(text: str) -> str:
    """`fold`, by its definition: lower-case, NFKD, without the combining characters, the words joined."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = decomposed if decomposed.isascii() else _strip_combining(decomposed)
    return " ".join(_WORD.findall(plain.replace("_", " ")))


#: `fold` of each ASCII byte: a letter lower-cased, a word character (`_WORD` but "_") kept, anything else
#: a space; the bytes of the UTF-8 sequences of other characters (0x80 and up) left as they are.
_ASCII_FOLD = bytes(
    b if b >= 0x80 else ord(chr(b).lower()) if chr(b) != "_" and _WORD.fullmatch(chr(b)) else 0x20
    for b in range(256)
)
_ASCII_BYTES = bytes(range(0x80))


def _char_fold(char: str) -> str:
    """What `fold` makes of one character, with a space standing for anything not in a word."""
    decomposed = unicodedata.normalize("NFKD", char.lower())
    return "".join(
        c if c != "_" and _WORD.fullmatch(c) else " " for c in decomposed if not unicodedata.combining(c)
    )


@functools.lru_cache(maxsize=8192)
def _folded_char(char: str) -> str | None:
    """What `fold` makes of `char` (not ASCII) in any text, before its ASCII characters are folded; None
    when that is not safe.

    Not safe: capital sigma, whose lower case depends on the letters around it; a character folding to
    an ASCII capital (black-letter H folds to H, which the ASCII step would lower-case); a character
    whose fold holds another non-ASCII character that does not fold to itself (a mathematical capital
    alpha folds to a capital alpha): `fold` replaces characters one after the other, and must not fold
    again what an earlier replacement put in.
    """
    if char == "\u03a3":
        return None
    folded = _char_fold(char)
    for c in folded:
        if c.isascii():
            if _ASCII_FOLD[ord(c)] != ord(c):
                return None
        elif c != char and _char_fold(c) != c:
            return None
    return folded


def fold(text: str) -> str:
    """Lower-case `text`, strip its accents and keep its words separated by single spaces.

    The webmail folds a search query the same way, so "Réunion" finds "reunion" and "RÉUNION".

    This is `_fold_text` done character by character: lower-casing (but for capital sigma), NFKD (but
    for the order of combining characters, which are all removed) and telling word characters from the
    rest all work on each character alone. So each distinct non-ASCII character, found among the few
    bytes left once the ASCII ones are deleted from the UTF-8 text, is replaced by its fold (remembered,
    `_folded_char`), then the ASCII characters are folded by one `bytes.translate`: about six times faster
    than `_fold_text` on French text, whose regular expressions and normalisation go through every
    character in Python's slower paths. What is not safe that way (capital sigma, lone surrogates, see
    `_folded_char`) goes through `_fold_text`.
    """
    plain = text
    if not text.isascii():
        try:
            others = set(text.encode("utf-8").translate(None, _ASCII_BYTES).decode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate
            return _fold_text(text)
        for char in others:
            folded = _folded_char(char)
            if folded is None:
                return _fold_text(text)
            if folded != char:
                plain = plain.replace(char, folded)
    return b" ".join(plain.encode("utf-8").translate(_ASCII_FOLD).split()).decode("utf-8")


def _fold_head(text: str, length: int) -> str:
    """`fold(text)[:length]`, folding less of `text` when that is enough.

    The fold of a text cut just before a space is the start of the fold of the whole text, then a space
    and the fold of the rest (when both have words): nothing in `fold` looks across a space (lower-casing
    a capital sigma looks at the letters around it, but stops at a space; NFKD reorders combining
    characters only). So once the fold of the text before a space is `length` long, folding the rest
    would be wasted.
    """
    cut = text.find(" ", length + length // 8)
    if cut < 0:
        return fold(text)[:length]
    head = fold(text[:cut])
    if len(head) >= length:
        return head[:length]
    tail = fold(text[cut:])
    return (f"{head} {tail}" if head and tail else head or tail)[:length]


#: How much of a text `_snippet` reads first: enough for SNIPPET_LENGTH characters of most texts.
_SNIPPET_HEAD = 4 * SNIPPET_LENGTH


def _snippet(text: str) -> str:
    """The first SNIPPET_LENGTH characters of `text` with its whitespace runs made single spaces and its
    ends stripped, read from as little of `text` as gives them.

    That is `" ".join(text.split())`, and that of the start of `text` is the start of that of `text`:
    once it is SNIPPET_LENGTH long, the rest of `text` changes nothing. (It was `re.sub(r"\\s+", " ",
    text).strip()`, the same: `\\s` and `str.split` know the same whitespace; but the regular expression
    went through the whole text read, up to _SNIPPET_SOURCE characters, for 200 of them.)
    """
    head = " ".join(text[:_SNIPPET_HEAD].split())
    if len(head) >= SNIPPET_LENGTH or len(text) <= _SNIPPET_HEAD:
        return head[:SNIPPET_LENGTH]
    return " ".join(text.split())[:SNIPPET_LENGTH]


class _RememberingHeaderFactory(email.headerregistry.HeaderRegistry):
    """`policy.default`'s header factory, reusing the header objects it made for short values.

    With `policy.default` every access to a header parses it again (`summarize` reads Content-Type
    several times per part), and most headers of a message (Content-Type, MIME-Version, the sender…)
    recur from message to message. Header objects are immutable, so sharing them changes nothing.
    """

    def __init__(self):
        super().__init__()
        self._make = remember_short(super().__call__, longest=512)

    def __call__(self, name, value):
        return self._make(name, value)


_POLICY = email.policy.default.clone(header_factory=_RememberingHeaderFactory())


def summarize(raw: bytes) -> MessageSummary:
    """Parse a raw RFC 5322 message into the fields of a mailbox entry; never raises on bad input."""
    message = message_from_bytes(raw, _POLICY)
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
        # get_content_maintype() and get_content_subtype() each parse Content-Type again
        content_type = part.get_content_type().split("/")
        if content_type[0] != "text":
            continue
        subtype = content_type[1]
        if not snippet_source and subtype == "plain":
            snippet_source = _text_of(part, subtype)
        elif not html_fallback and subtype == "html":
            html_fallback = _text_of(part, subtype)
    text = snippet_source or html_fallback
    snippet = _snippet(text)
    subject = _header(message, "Subject")
    sender = senders[0] if senders else None
    searchable = " ".join(
        [subject, sender.name if sender else "", sender.address if sender else ""]
        + [a.filename for a in attachments]
        + [text[: SEARCH_TEXT_LENGTH * 2]]  # the join is cut there
    )
    return MessageSummary(
        sender=sender,
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        subject=subject,
        date=_date(message),
        message_id_header=_header(message, "Message-ID"),
        snippet=snippet,
        attachments=attachments,
        search_text=_fold_head(searchable[: SEARCH_TEXT_LENGTH * 2], SEARCH_TEXT_LENGTH),
        search_from=fold(f"{sender.name} {sender.address}"[:1000]) if sender else "",
        search_subject=fold(subject[:1000]),
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


#: Per mailbox, a token that changes after every write that removes an entry, moves one to another folder
#: or adds one that is not new (`{_id: address, token}`): the webmail's cached folder totals
#: (`webmail.mailbox.FolderTotals`) hold while it stays the same. Delivery only adds new entries
#: (`received_at` = now), which the totals count afresh, so the delivery path never writes it.
CHANGES = "mailbox_changes"


def mark_changed(db: Database, address: str) -> None:
    """Record that `address`'s entries changed otherwise than by a new delivery (see `CHANGES`)."""
    db[CHANGES].replace_one({"_id": address}, {"_id": address, "token": secrets.token_hex(8)}, upsert=True)


def change_token(db: Database, address: str) -> str:
    """The current token of `address` (see `CHANGES`); "" before any change."""
    doc = db[CHANGES].find_one({"_id": address})
    return doc["token"] if doc else ""


def insert_entries(db: Database, entries: Iterable[dict[str, Any]]) -> set[str]:
    """Insert mailbox entries (drafts, tests: not the delivery path, see `EntryWriter`), ignoring those
    already there; returns the ids newly inserted. Marks the mailboxes changed (`mark_changed`)."""
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
        inserted = {entry["_id"] for entry in entries} - duplicates
    else:
        inserted = {entry["_id"] for entry in entries}
    for address in sorted({entry["mailbox"] for entry in entries if entry["_id"] in inserted}):
        mark_changed(db, address)
    return inserted


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


class EntryWriter:
    """`insert_entries` and `add_usage` for a process delivering many messages at once (delivery).

    The entries of the workers that deliver at the same time are inserted by one `insert_many`, and their
    usage by one `$inc` per mailbox, in the same flush with `insert_counted` (`common.groupcommit`): on
    FerretDB v1 every write is a synced commit of the database's single writer, so this is what lets
    concurrent deliveries go faster than one at a time. Each caller returns only once its own writes
    are done, as with the functions.
    """

    def __init__(self, db: Database):
        self.db = db
        self._entries = GroupCommit(lambda documents: insert_outcomes(db.mailbox_entries, documents))
        self._usage = GroupCommit(self._add_usage)
        self._counted = GroupCommit(self._insert_counted)

    def insert(self, entries: Iterable[dict[str, Any]]) -> set[str]:
        """Insert mailbox entries, ignoring those already there; returns the ids newly inserted."""
        entries = list(entries)
        outcomes = self._entries.submit(entries)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return {entry["_id"] for entry, outcome in zip(entries, outcomes, strict=True) if outcome is True}

    def insert_counted(self, entries: Iterable[dict[str, Any]]) -> set[str]:
        """`insert`, then `add_usage` of the entries newly inserted, in the same flush.

        A caller waits for one flush instead of two. The usage of an entry is counted only once it is
        stored, as with the two calls; if counting fails, the call raises (and a redelivery finds the
        entries already there, exactly as when `add_usage` fails after `insert`).
        """
        entries = list(entries)
        outcomes = self._counted.submit(entries)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return {entry["_id"] for entry, outcome in zip(entries, outcomes, strict=True) if outcome is True}

    def _insert_counted(self, entries: list[dict[str, Any]]) -> list[bool | Exception]:
        outcomes = insert_outcomes(self.db.mailbox_entries, entries)
        new = [index for index, outcome in enumerate(outcomes) if outcome is True]
        usage = self._add_usage([(entries[i]["mailbox"], int(entries[i].get("size", 0))) for i in new])
        for index, counted in zip(new, usage, strict=True):
            if counted is not True:
                outcomes[index] = counted
        return outcomes

    def add_usage(self, entries: Iterable[dict[str, Any]]) -> None:
        """Count the size of newly stored entries against their mailboxes (`mailboxes.used_bytes`)."""
        for outcome in self._usage.submit([(e["mailbox"], int(e.get("size", 0))) for e in entries]):
            if isinstance(outcome, Exception):
                raise outcome

    def _add_usage(self, items: list[tuple[str, int]]) -> list[bool | Exception]:
        totals: dict[str, int] = {}
        for mailbox, size in items:
            totals[mailbox] = totals.get(mailbox, 0) + size
        failed: dict[str, Exception] = {}
        for mailbox, size in totals.items():
            try:
                self.db.mailboxes.update_one({"_id": mailbox}, {"$inc": {"used_bytes": size}}, upsert=True)
            except Exception as exc:  # noqa: BLE001 - the outcome of that mailbox's items
                failed[mailbox] = exc
        return [failed.get(mailbox, True) for mailbox, _ in items]
