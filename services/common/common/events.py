"""The event envelope and the catalogue of event types.

Every event on the bus is one JSON envelope:

    {"event_id": "…32 hex…", "type": "mail.received", "version": 1, "occurred_at": "2026-…Z",
     "trace_id": "…32 hex…", "source": "ingest", "payload": {…}}

A message on the wire carries one envelope, or a JSON array of up to `WIRE_BATCH_MAX` envelopes of one
type that were published together (`wire_body`, `wire_items`).

Events carry ids, never message bodies (claim check: the raw message is stored once, in the blob store).
`EVENT_TYPES` lists every type with the payload fields it must have; docs/events.md describes each one,
its producer, its consumers and its idempotency key, and a test keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.logs import current_trace_id, new_trace_id

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

#: Largest envelope accepted, in bytes of JSON. Events carry ids, not bodies: anything bigger is a bug.
#: It bounds a whole wire message too, one envelope or a batch.
MAX_ENVELOPE_BYTES = 256 * 1024

#: Most envelopes one wire message carries.
WIRE_BATCH_MAX = 10


class InvalidEvent(ValueError):
    """An envelope or payload does not match the contract."""


@dataclass(frozen=True)
class EventType:
    """One kind of event: its name, current version and required payload fields (name -> type)."""

    name: str
    version: int
    required: Mapping[str, type | tuple[type, ...]]
    description: str = ""


def _types(*types: EventType) -> dict[str, EventType]:
    return {t.name: t for t in types}


#: Every event the platform publishes. Extend here (and in docs/events.md) when adding one.
EVENT_TYPES: dict[str, EventType] = _types(
    EventType(
        "mail.received",
        1,
        {"message_id": str, "sender": str, "recipients": list, "size": int, "origin": str},
        "ingest stored a raw message once; the pipeline takes it from here",
    ),
    EventType(
        "mail.scanned",
        1,
        {"message_id": str, "sender": str, "recipients": list, "origin": str, "scanner": str},
        "the antivirus found the message clean",
    ),
    EventType(
        "mail.infected",
        1,
        {"message_id": str, "sender": str, "recipients": list, "origin": str, "signature": str},
        "the antivirus found a virus: the message goes to quarantine, never to an inbox",
    ),
    EventType(
        "mail.classified",
        1,
        {
            "message_id": str,
            "sender": str,
            "recipients": list,
            "origin": str,
            "verdict": str,
            "score": (int, float),
            "model_version": str,
        },
        "the spam stage scored the message",
    ),
    EventType(
        "mail.delivered",
        1,
        {"message_id": str, "mailbox": str, "folder": str, "entry_id": str},
        "a mailbox entry was stored for one local recipient",
    ),
    EventType(
        "mail.bounced",
        1,
        {"message_id": str, "sender": str, "recipient": str, "status": str, "diagnostic": str},
        "a message could not be delivered to one recipient: the sender gets a French delivery report",
    ),
    EventType(
        "mail.feedback",
        1,
        {"account_id": str, "message_id": str, "label": str},
        "a user reported a message as spam or as not spam",
    ),
    EventType(
        "account.reset_requested",
        1,
        {"account_id": str, "recovery_address": str, "reset_url": str, "expires_at": str},
        "the directory issued a password-reset link to send to the recovery address",
    ),
    EventType(
        "account.password_changed",
        1,
        {"account_id": str, "address": str, "changed_at": str, "reason": str},
        "a password was changed or reset: the mailbox gets a notice",
    ),
)


#: The platform's own types, as declared above (tests and probes may register more at run time).
PLATFORM_EVENT_TYPES = frozenset(EVENT_TYPES)


def register_event_type(event_type: EventType) -> None:
    """Add an event type at run time (used by tests and by operators' probes)."""
    EVENT_TYPES[event_type.name] = event_type


@dataclass(frozen=True)
class Envelope:
    """One event as it travels on the bus."""

    type: str
    payload: dict[str, Any]
    source: str
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    version: int = 1
    occurred_at: str = field(default_factory=lambda: _isoformat(dt.datetime.now(dt.UTC)))
    trace_id: str = field(default_factory=lambda: current_trace_id() or new_trace_id())

    @classmethod
    def new(
        cls,
        event_type: str,
        payload: Mapping[str, Any],
        source: str,
        trace_id: str | None = None,
        event_id: str | None = None,
    ):
        """A fresh, validated envelope of `event_type` at its current version (a new id unless given)."""
        known = EVENT_TYPES.get(event_type)
        if known is None:
            raise InvalidEvent(f"unknown event type {event_type!r}")
        envelope = cls(
            type=event_type,
            payload=dict(payload),
            source=source,
            version=known.version,
            trace_id=trace_id or current_trace_id() or new_trace_id(),
            **({"event_id": event_id} if event_id else {}),
        )
        envelope.validate()
        return envelope

    def to_dict(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at,
            "trace_id": self.trace_id,
            "source": self.source,
            "payload": self.payload,
        }

    def to_json(self) -> bytes:
        """The envelope serialised for the wire."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_wire(cls, body: bytes | str | Mapping[str, Any]) -> Envelope:
        """Parse and validate an envelope received from the bus; raises InvalidEvent."""
        if isinstance(body, bytes | str):
            body = _decoded(body)
        if not isinstance(body, Mapping):
            raise InvalidEvent("envelope is not a JSON object")
        expected = {"event_id", "type", "version", "occurred_at", "trace_id", "source", "payload"}
        missing = expected - body.keys()
        if missing:
            raise InvalidEvent(f"envelope lacks {', '.join(sorted(missing))}")
        extra = body.keys() - expected
        if extra:
            raise InvalidEvent(f"envelope has unknown fields {', '.join(sorted(extra))}")
        envelope = cls(**{k: body[k] for k in expected})
        envelope.validate()
        return envelope

    def validate(self) -> None:
        """Check every field against the contract; raises InvalidEvent with the first problem."""
        if not isinstance(self.event_id, str) or not _HEX32.match(self.event_id):
            raise InvalidEvent("event_id must be 32 lowercase hex digits")
        if not isinstance(self.trace_id, str) or not _HEX32.match(self.trace_id):
            raise InvalidEvent("trace_id must be 32 lowercase hex digits")
        if not isinstance(self.type, str) or not _TYPE.match(self.type):
            raise InvalidEvent(f"malformed event type {self.type!r}")
        if not isinstance(self.source, str) or not self.source:
            raise InvalidEvent("source must name the producing service")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise InvalidEvent("version must be a positive integer")
        _parse_time(self.occurred_at)
        if not isinstance(self.payload, dict):
            raise InvalidEvent("payload must be a JSON object")
        known = EVENT_TYPES.get(self.type)
        if known is None:
            raise InvalidEvent(f"unknown event type {self.type!r}")
        if self.version > known.version:
            raise InvalidEvent(f"{self.type} version {self.version} is newer than this service knows")
        for name, kind in known.required.items():
            if name not in self.payload:
                raise InvalidEvent(f"{self.type} payload lacks {name!r}")
            value = self.payload[name]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise InvalidEvent(f"{self.type} payload field {name!r} has the wrong type")


def wire_body(encoded: list[bytes]) -> bytes:
    """The body of a wire message carrying the envelopes `encoded` (each `Envelope.to_json()`): the
    envelope itself when there is one, else a JSON array of them."""
    return encoded[0] if len(encoded) == 1 else b"[" + b",".join(encoded) + b"]"


def wire_items(body: bytes | str) -> list[Any]:
    """The decoded JSON of each envelope a wire message carries, to validate one by one with
    `Envelope.from_wire`: the object itself, or the elements of a batch's array. Raises InvalidEvent
    when the body as a whole is unusable (too large, not JSON, neither an object nor a non-empty array
    of at most `WIRE_BATCH_MAX` elements)."""
    decoded = _decoded(body)
    if isinstance(decoded, dict):
        return [decoded]
    if not isinstance(decoded, list):
        raise InvalidEvent("envelope is not a JSON object")
    if not decoded or len(decoded) > WIRE_BATCH_MAX:
        raise InvalidEvent(f"a batch of {len(decoded)} envelopes (1 to {WIRE_BATCH_MAX} expected)")
    return decoded


def _decoded(body: bytes | str) -> Any:
    """The JSON of a message's body, at most MAX_ENVELOPE_BYTES; raises InvalidEvent."""
    if len(body) > MAX_ENVELOPE_BYTES:
        raise InvalidEvent(f"envelope of {len(body)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"envelope is not JSON: {exc}") from None


def _isoformat(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise InvalidEvent("occurred_at must be an ISO-8601 string")
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"occurred_at {value!r} is not ISO-8601") from None
    if moment.tzinfo is None:
        raise InvalidEvent("occurred_at must carry a time zone")
    return moment
