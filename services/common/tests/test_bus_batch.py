"""How a batch handler's outcomes settle its events (common.bus.BatchEventConsumer), and how the events of
a message that carries several are taken and settled, broker replaced."""

from __future__ import annotations

import json
from unittest import mock

from common.bus import BatchEventConsumer, PublishError, _Delivery, each_event
from common.events import Envelope, wire_body
from common.topology import consumer


def envelope(n: int) -> Envelope:
    return Envelope.new(
        "mail.scanned",
        {
            "message_id": f"m{n}",
            "sender": "a@ac-montpellier.fr",
            "recipients": ["b@ac-montpellier.fr"],
            "origin": "mx",
            "scanner": "ClamAV",
        },
        source="scan",
    )


def make_consumer() -> BatchEventConsumer:
    entrypoint = BatchEventConsumer("mail.scanned", max_batch=10)
    entrypoint.spec = consumer("spam", "mail.scanned")
    entrypoint.queue_consumer = mock.Mock()
    entrypoint.republisher = mock.Mock()
    entrypoint.delays, entrypoint.max_attempts = (1, 5), 5
    entrypoint.container = mock.Mock()
    entrypoint._running = 1
    return entrypoint


def batch(size: int) -> list:
    """`size` events, each from a message of its own."""
    return [(_Delivery(mock.Mock(headers={})), envelope(n)) for n in range(size)]


def carried(size: int) -> tuple[mock.Mock, list]:
    """A message carrying `size` events, as the consumer queues them."""
    message = mock.Mock(headers={})
    delivery = _Delivery(message, size)
    return message, [(delivery, envelope(n)) for n in range(size)]


def retried(entrypoint) -> list[str]:
    return [
        call.args[0].payload["message_id"] for call in entrypoint.republisher.publish_envelope.call_args_list
    ]


def test_each_event_is_acked_and_only_the_failed_one_is_retried():
    entrypoint, events = make_consumer(), batch(3)
    entrypoint.handle_batch_result(events, None, result=[None, ValueError("bad"), None])
    assert retried(entrypoint) == ["m1"]
    assert entrypoint.queue_consumer.ack_message.call_count == 3  # the failed one once re-published
    assert entrypoint._running == 0


def test_a_handler_that_raised_retries_every_event_of_its_batch():
    entrypoint, events = make_consumer(), batch(3)
    error = RuntimeError("database down")
    entrypoint.handle_batch_result(events, None, exc_info=(RuntimeError, error, None))
    assert retried(entrypoint) == ["m0", "m1", "m2"]


def test_a_wrong_number_of_outcomes_counts_as_a_failure_of_the_whole_batch():
    entrypoint, events = make_consumer(), batch(3)
    entrypoint.handle_batch_result(events, None, result=[None])
    assert retried(entrypoint) == ["m0", "m1", "m2"]


def test_events_are_handed_out_in_batches_of_at_most_max_batch():
    entrypoint = make_consumer()
    entrypoint._running = 0
    for delivery, event in batch(25):
        entrypoint._queued.append((delivery, event))
    entrypoint._dispatch()
    sizes = [len(call.args[1][0]) for call in entrypoint.container.spawn_worker.call_args_list]
    assert sizes == [10, 10]  # two batches at once (concurrency 2); the rest waits for one to end
    assert len(entrypoint._queued) == 5


def test_a_message_of_several_events_is_acked_once_all_are_concluded():
    entrypoint = make_consumer()
    message, events = carried(5)
    entrypoint.handle_batch_result(events[:3], None, result=[None, ValueError("bad"), None])
    assert retried(entrypoint) == ["m1"]  # the failed event goes on alone
    entrypoint.queue_consumer.ack_message.assert_not_called()  # two of its events are not handled yet
    entrypoint._running = 1
    entrypoint.handle_batch_result(events[3:], None, result=[None, None])
    entrypoint.queue_consumer.ack_message.assert_called_once_with(message)


def test_a_message_of_several_events_is_requeued_whole_if_one_cannot_be_retried():
    entrypoint = make_consumer()
    entrypoint.republisher.publish_envelope.side_effect = PublishError("broker away")
    message, events = carried(3)
    entrypoint.handle_batch_result(events, None, result=[None, ValueError("bad"), None])
    entrypoint.queue_consumer.ack_message.assert_not_called()
    entrypoint.queue_consumer.requeue_message.assert_called_once_with(message)  # once, for all three


def test_the_events_of_a_message_are_queued_and_an_invalid_one_is_dead_lettered_alone():
    entrypoint = make_consumer()
    entrypoint._running = 2  # nothing dispatched: the events stay queued
    entrypoint._dead_letter_raw = mock.Mock()
    good = [envelope(n).to_json() for n in range(3)]
    bad = json.loads(good[1])
    del bad["payload"]["scanner"]
    message = mock.Mock(headers={}, body=wire_body([good[0], json.dumps(bad).encode(), good[2]]))
    entrypoint.handle_message(None, message)
    assert [event.payload["message_id"] for _, event in entrypoint._queued] == ["m0", "m2"]
    delivery, reason, body = entrypoint._dead_letter_raw.call_args.args
    assert delivery is entrypoint._queued[0][0] and delivery.message is message
    assert "lacks 'scanner'" in reason
    assert json.loads(body) == bad
    assert delivery.pending == 3  # the mock dead-lettering concluded nothing


def test_a_message_that_is_not_a_batch_of_envelopes_is_dead_lettered_whole():
    entrypoint = make_consumer()
    entrypoint._dead_letter_raw = mock.Mock()
    for body in (b"[]", b"[1, 2", b"42", b"[" + b",".join([envelope(0).to_json()] * 11) + b"]"):
        message = mock.Mock(headers={}, body=body)
        entrypoint.handle_message(None, message)
        assert entrypoint._dead_letter_raw.call_args.args[0].message is message
    assert entrypoint._queued == []


def test_each_event_works_each_event_and_keeps_the_failures_as_outcomes():
    envelopes = [envelope(n) for n in range(3)]
    missing = LookupError("blob missing")

    def work(envelope, value):
        if envelope.payload["message_id"] == "m2":
            raise ValueError("bad")
        return value * 2

    outcomes: list = [None] * 3
    assert each_event(envelopes, [10, missing, 30], outcomes, work) == [(0, 20)]
    assert outcomes[0] is None and outcomes[1] is missing and isinstance(outcomes[2], ValueError)
    # Without values, the work takes the envelope alone.
    outcomes = [None] * 3
    got = each_event(envelopes, None, outcomes, lambda e: e.payload["message_id"])
    assert got == [(0, "m0"), (1, "m1"), (2, "m2")]
    assert outcomes == [None] * 3
