"""The event bus against the real RabbitMQ: a nameko service consumes, retries, dead-letters, replays."""

from __future__ import annotations

import json

import pytest
from kombu import Connection, Producer

from common import deadletters
from common.bus import ATTEMPTS_HEADER, QUEUE_HEADER, REASON_HEADER, PublishError
from common.config import get_settings
from common.events import EventType, register_event_type
from common.topology import ConsumerSpec, declare, register_consumer
from tests.helpers import ServiceProcess, free_port, wait_until

PROBE = ConsumerSpec("probe", "probe.ping")
BATCH_PROBE = ConsumerSpec("probe", "probe.batch")
register_event_type(EventType("probe.ping", 1, {"n": int}, "bus test probe"))
register_event_type(EventType("probe.batch", 1, {"n": int}, "bus test probe, batch handler"))
register_event_type(EventType("probe.nobody", 1, {}, "an event no service consumes"))
register_consumer(PROBE)
register_consumer(BATCH_PROBE)


@pytest.fixture
def probe_queues():
    """The probe's queues, declared and emptied so that each test starts clean."""
    url = get_settings().amqp_url
    with Connection(url) as conn:
        declare(conn.default_channel, [PROBE, BATCH_PROBE], (1,))
        for queue in [*PROBE.all_queues((1,)), *BATCH_PROBE.all_queues((1,))]:
            queue(conn.default_channel).purge()
    return PROBE


@pytest.fixture
def probe(database, probe_queues, tmp_path):
    """The probe nameko service, running as a process against the real broker and database."""
    port = free_port()
    service = ServiceProcess(
        ["tests/integration/probe_service.py"],
        env={
            "DATABASE_NAME": database.name,
            "EVENT_RETRY_DELAYS": "1",
            "EVENT_MAX_ATTEMPTS": "3",
            "PROBE_METRICS_PORT": str(port),
            "PYTHONPATH": ".",
        },
        health_port=port,
        log_path=tmp_path / "probe.log",
    )
    try:
        service.wait_healthy()
        yield service
    finally:
        service.stop()


def test_published_event_is_consumed_by_a_nameko_service(probe, database, publisher):
    envelope = publisher.publish("probe.ping", {"n": 1})

    record = wait_until(
        lambda: database.probe_received.find_one({"_id": envelope.event_id}), what="consumption"
    )
    assert record["n"] == 1
    assert record["trace_id"] == envelope.trace_id


def test_many_events_are_each_consumed_once(probe, database, publisher):
    sent = [publisher.publish("probe.ping", {"n": n}).event_id for n in range(200)]

    wait_until(lambda: database.probe_received.count_documents({}) >= 200, timeout=60, what="200 events")
    assert sorted(d["_id"] for d in database.probe_received.find({}, {"_id": 1})) == sorted(sent)


def test_publishing_an_event_that_routes_nowhere_raises(publisher):
    with pytest.raises(PublishError, match="routes to no queue"):
        publisher.publish("probe.nobody", {})
    # The lane stays usable: the next, routable publish is confirmed normally.
    publisher.publish("probe.ping", {"n": 2})


def test_publishing_an_unknown_or_invalid_event_is_refused(publisher):
    from common.events import InvalidEvent

    with pytest.raises(InvalidEvent):
        publisher.publish("probe.unknown_type", {})
    with pytest.raises(InvalidEvent, match="lacks 'n'"):
        publisher.publish("probe.ping", {})


def test_a_failing_handler_dead_letters_after_bounded_attempts_then_replays(probe, database, publisher):
    database.probe_switch.insert_one({"_id": "fail"})
    envelope = publisher.publish("probe.ping", {"n": 3})

    letters = wait_until(lambda: deadletters.show(PROBE.queue_name), timeout=60, what="a dead letter")
    assert [letter.event_id for letter in letters] == [envelope.event_id]
    assert letters[0].attempts == 3
    assert "probe failure requested by the test" in letters[0].reason
    assert database.probe_received.count_documents({}) == 0
    # show() does not consume: the letter is still there.
    assert len(deadletters.show(PROBE.queue_name)) == 1

    database.probe_switch.delete_many({})
    assert deadletters.replay(PROBE.queue_name) == 1
    wait_until(lambda: database.probe_received.find_one({"_id": envelope.event_id}), what="replayed event")
    assert deadletters.show(PROBE.queue_name) == []


def test_headers_of_a_dead_letter_name_queue_reason_and_attempts(probe, database, publisher):
    database.probe_switch.insert_one({"_id": "fail"})
    publisher.publish("probe.ping", {"n": 4})
    with Connection(get_settings().amqp_url) as conn:
        channel = conn.channel()
        message = wait_until(lambda: channel.basic_get(PROBE.dead_letter_queue_name, no_ack=True), timeout=60)
    assert message.headers[ATTEMPTS_HEADER] == 3
    assert message.headers[QUEUE_HEADER] == PROBE.queue_name
    assert "RuntimeError" in message.headers[REASON_HEADER]


def test_an_unparseable_event_goes_straight_to_the_dead_letter_queue(probe, database):
    with Connection(get_settings().amqp_url) as conn:
        Producer(conn.default_channel).publish(
            b"{not json", exchange="", routing_key=PROBE.queue_name, content_type="application/json"
        )
        Producer(conn.default_channel).publish(
            json.dumps({"type": "probe.ping"}), exchange="", routing_key=PROBE.queue_name
        )
    letters = wait_until(
        lambda: (found := deadletters.show(PROBE.queue_name)) and len(found) == 2 and found, timeout=30
    )
    assert all(letter.reason.startswith("invalid envelope") for letter in letters)
    assert all(letter.attempts == 0 for letter in letters)
    assert database.probe_received.count_documents({}) == 0


def test_concurrent_publishes_share_groups_and_each_event_arrives_once(probe, database, publisher):
    """Publishes from many threads are group-committed (written together, confirms awaited together):
    each caller still gets its own confirm, and each event is consumed once."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(lambda n: publisher.publish("probe.ping", {"n": n}).event_id, range(300)))

    wait_until(lambda: database.probe_received.count_documents({}) >= 300, timeout=60, what="300 events")
    assert sorted(d["_id"] for d in database.probe_received.find({}, {"_id": 1})) == sorted(sent)


def test_publish_many_gives_each_event_its_own_outcome(probe, database, publisher):
    """An unroutable event in the middle of a group fails alone; the others are confirmed and consumed."""
    from common.events import Envelope

    envelopes = [
        Envelope.new("probe.ping", {"n": 1}, "tests"),
        Envelope.new("probe.nobody", {}, "tests"),
        Envelope.new("probe.ping", {"n": 2}, "tests"),
    ]
    first, refused, last = publisher.publish_many(envelopes)
    assert first is None and last is None
    assert isinstance(refused, PublishError) and refused.reason == "unroutable"
    wait_until(lambda: database.probe_received.count_documents({}) >= 2, what="the two routable events")
    assert {d["_id"] for d in database.probe_received.find()} == {
        envelopes[0].event_id,
        envelopes[2].event_id,
    }


def test_a_batch_handler_gets_events_together_and_settles_each_on_its_own(probe, database, publisher):
    """Events queued together reach the batch handler as batches (at most its max_batch of 20); an event
    the handler fails is retried and dead-lettered alone, the others of its batch are handled once."""
    from common.events import Envelope

    # The failing event travels in the middle of a message of ten (events published together of one type
    # share a message): it goes on alone, the other nine are handled once and their message acked.
    envelopes = [Envelope.new("probe.batch", {"n": n}, "tests") for n in [*range(75), -1, *range(75, 150)]]
    assert publisher.publish_many(envelopes) == [None] * len(envelopes)

    wait_until(lambda: database.probe_received.count_documents({}) >= 150, timeout=60, what="150 events")
    letters = wait_until(lambda: deadletters.show(BATCH_PROBE.queue_name), timeout=60, what="a dead letter")
    assert [letter.event_id for letter in letters] == [envelopes[75].event_id]
    assert letters[0].attempts == 3
    assert "negative probe -1" in letters[0].reason
    records = list(database.probe_received.find())
    assert sorted(r["n"] for r in records) == list(range(150))
    sizes = [r["batch"] for r in records]
    assert max(sizes) > 1, "events waiting together were handled one by one"
    assert max(sizes) <= 20


def test_events_published_together_travel_in_messages_of_ten_and_each_is_consumed_once(
    probe, database, publisher
):
    from common.events import WIRE_BATCH_MAX, Envelope
    from tests.pipeline import EventTap

    tap = EventTap("probe.ping")
    try:
        envelopes = [Envelope.new("probe.ping", {"n": n}, "tests") for n in range(25)]
        assert publisher.publish_many(envelopes) == [None] * 25
        channel, messages = tap.connection.default_channel, []
        while (message := channel.basic_get(tap.queue.name, no_ack=True)) is not None:
            messages.append(message)
        assert [m.headers["x-event-count"] for m in messages] == [WIRE_BATCH_MAX, WIRE_BATCH_MAX, 5]
        assert [e["event_id"] for m in messages for e in json.loads(m.body)] == [
            e.event_id for e in envelopes
        ]
    finally:
        tap.close()
    wait_until(lambda: database.probe_received.count_documents({}) >= 25, timeout=60, what="25 events")
    assert sorted(d["_id"] for d in database.probe_received.find({}, {"_id": 1})) == sorted(
        e.event_id for e in envelopes
    )


def test_an_invalid_envelope_in_a_batch_is_dead_lettered_alone(probe, database):
    from common.events import Envelope

    valid = [Envelope.new("probe.ping", {"n": n}, "tests") for n in range(2)]
    body = b"[" + b",".join([valid[0].to_json(), b'{"type": "probe.ping"}', valid[1].to_json()]) + b"]"
    with Connection(get_settings().amqp_url) as conn:
        Producer(conn.default_channel).publish(
            body, exchange="", routing_key=PROBE.queue_name, content_type="application/json"
        )
    letters = wait_until(lambda: deadletters.show(PROBE.queue_name), timeout=30, what="a dead letter")
    assert len(letters) == 1 and letters[0].reason.startswith("invalid envelope")
    assert json.loads(letters[0].body) == {"type": "probe.ping"}
    wait_until(lambda: database.probe_received.count_documents({}) >= 2, what="the two valid events")
    assert {d["_id"] for d in database.probe_received.find()} == {e.event_id for e in valid}
