"""Which events share a message on the wire (common.bus._wire_messages) and how a message's body is read
back (common.events.wire_items)."""

from __future__ import annotations

import json

import pytest

from common.bus import _Outgoing, _wire_messages
from common.events import MAX_ENVELOPE_BYTES, WIRE_BATCH_MAX, Envelope, InvalidEvent, wire_items
from common.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE


def delivered(n: int, note: str = "") -> Envelope:
    payload = {"message_id": f"m{n}", "mailbox": "a@ac-montpellier.fr", "folder": "INBOX", "entry_id": "e"}
    return Envelope.new("mail.delivered", {**payload, **({"note": note} if note else {})}, "delivery")


def bounced(n: int) -> Envelope:
    payload = {"message_id": f"b{n}", "sender": "a@x.fr", "recipient": "b@y.fr", "status": "5.1.1"}
    return Envelope.new("mail.bounced", {**payload, "diagnostic": "inconnu"}, "delivery")


def outgoing(envelope: Envelope, exchange=EVENTS_EXCHANGE, headers=None) -> _Outgoing:
    return _Outgoing(envelope, exchange, envelope.type, headers or {})


def carried(wire) -> list[str]:
    return [item["payload"]["message_id"] for item in wire_items(wire.message.body)]


def test_events_of_one_type_share_messages_of_at_most_wire_batch_max():
    items = [outgoing(delivered(n)) for n in range(23)]
    wires = _wire_messages(items)
    assert [len(w.items) for w in wires] == [WIRE_BATCH_MAX, WIRE_BATCH_MAX, 3]
    assert [i for w in wires for i in w.items] == list(range(23))
    assert [m for w in wires for m in carried(w)] == [f"m{n}" for n in range(23)]
    first = wires[0].message
    assert first.properties["type"] == "mail.delivered" and first.headers == {"x-event-count": 10}
    assert first.properties["message_id"] not in {item.envelope.event_id for item in items}
    assert wires[2].routing_key == "mail.delivered" and wires[2].exchange is EVENTS_EXCHANGE


def test_types_travel_apart_and_events_with_headers_or_another_exchange_alone():
    items = [
        outgoing(delivered(0)),
        outgoing(bounced(0)),
        outgoing(delivered(1)),
        outgoing(delivered(2), headers={"x-attempts": 1}),
        outgoing(delivered(3), exchange=DEAD_LETTER_EXCHANGE),
        outgoing(bounced(1)),
    ]
    wires = {tuple(w.items): w for w in _wire_messages(items)}
    assert set(wires) == {(0, 2), (1, 5), (3,), (4,)}
    alone = wires[(3,)].message
    assert alone.body == items[3].envelope.to_json()  # the envelope itself, not an array of one
    assert alone.properties["message_id"] == items[3].envelope.event_id
    assert alone.headers == {"x-trace-id": items[3].envelope.trace_id, "x-attempts": 1}
    assert carried(wires[(1, 5)]) == ["b0", "b1"]


def test_a_message_stays_within_the_size_limit():
    note = "x" * (MAX_ENVELOPE_BYTES // 3)
    items = [outgoing(delivered(n, note)) for n in range(5)]
    wires = _wire_messages(items)
    assert [len(w.items) for w in wires] == [2, 2, 1]
    assert all(len(w.message.body) <= MAX_ENVELOPE_BYTES for w in wires)


def test_a_message_body_is_read_as_its_envelopes():
    one, two = delivered(1).to_json(), delivered(2).to_json()
    assert wire_items(one) == [json.loads(one)]
    assert wire_items(b"[" + one + b"," + two + b"]") == [json.loads(one), json.loads(two)]
    assert wire_items(b"[1]") == [1]  # each element is validated afterwards, on its own
    for bad in (b"", b"[", b"[]", b"42", b'"text"', b"[" + b",".join([one] * (WIRE_BATCH_MAX + 1)) + b"]"):
        with pytest.raises(InvalidEvent):
            wire_items(bad)
    with pytest.raises(InvalidEvent, match="exceeds"):
        wire_items(b" " * (MAX_ENVELOPE_BYTES + 1))
