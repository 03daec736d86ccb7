"""The event envelope: what is accepted, what is refused, and why."""

import json

import pytest

from common.events import EVENT_TYPES, MAX_ENVELOPE_BYTES, PLATFORM_EVENT_TYPES, Envelope, InvalidEvent
from common.logs import trace_context

RECEIVED = {
    "message_id": "m1",
    "sender": "a@ac-montpellier.fr",
    "recipients": ["b@ac-montpellier.fr"],
    "size": 10,
    "origin": "mx",
}


def test_new_envelope_round_trips_through_the_wire():
    envelope = Envelope.new("mail.received", RECEIVED, source="ingest")
    again = Envelope.from_wire(envelope.to_json())
    assert again == envelope
    assert again.version == EVENT_TYPES["mail.received"].version
    assert again.occurred_at.endswith("Z")


def test_new_envelope_inherits_the_current_trace_id():
    with trace_context("ab" * 16):
        envelope = Envelope.new("mail.received", RECEIVED, source="ingest")
    assert envelope.trace_id == "ab" * 16


def wire(**changes):
    body = Envelope.new("mail.received", RECEIVED, source="ingest").to_dict()
    body.update(changes)
    return json.dumps(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"type": "mail.received"}), "lacks"),
        (wire(extra=1), "unknown fields"),
        (wire(event_id="123"), "event_id"),
        (wire(trace_id="XYZ"), "trace_id"),
        (wire(type="mail.unknown"), "unknown event type"),
        (wire(type="Mail Received"), "malformed event type"),
        (wire(version=0), "version"),
        (wire(version=True), "version"),
        (wire(version=99), "newer"),
        (wire(occurred_at="yesterday"), "ISO-8601"),
        (wire(occurred_at="2026-11-26T10:00:00"), "time zone"),
        (wire(source=""), "source"),
        (wire(payload=[]), "payload must be"),
        (wire(payload={**RECEIVED, "size": "10"}), "wrong type"),
        (wire(payload={**RECEIVED, "size": True}), "wrong type"),
        (wire(payload={k: v for k, v in RECEIVED.items() if k != "sender"}), "lacks 'sender'"),
    ],
)
def test_invalid_envelopes_are_refused_with_the_reason(body, message):
    with pytest.raises(InvalidEvent, match=message):
        Envelope.from_wire(body)


def test_oversized_envelopes_are_refused_before_parsing():
    with pytest.raises(InvalidEvent, match="exceeds"):
        Envelope.from_wire(b"{" + b" " * MAX_ENVELOPE_BYTES + b"}")


def test_every_event_type_is_documented():
    from common.config import PROJECT_ROOT

    doc = (PROJECT_ROOT / "docs" / "events.md").read_text()
    for name in PLATFORM_EVENT_TYPES:
        assert f"### `{name}`" in doc, f"docs/events.md does not describe {name}"
        for field in EVENT_TYPES[name].required:
            assert f"`{field}`" in doc
