"""How a batch handler's outcomes settle its events (common.bus.BatchEventConsumer), broker replaced."""

from __future__ import annotations

from unittest import mock

from common.bus import BatchEventConsumer
from common.events import Envelope
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
    return [(mock.Mock(headers={}), envelope(n)) for n in range(size)]


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
    for message, event in batch(25):
        entrypoint._queued.append((message, event))
    entrypoint._dispatch()
    sizes = [len(call.args[1][0]) for call in entrypoint.container.spawn_worker.call_args_list]
    assert sizes == [10, 10]  # two batches at once (concurrency 2); the rest waits for one to end
    assert len(entrypoint._queued) == 5
