"""Queue names and arguments of the topology."""

from common.topology import CONSUMERS, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, ConsumerSpec, consumer


def test_one_queue_per_consumer_bound_by_event_type():
    spec = ConsumerSpec("scan", "mail.received")
    queue = spec.queue()
    assert queue.name == "scan.mail.received"
    assert queue.exchange == EVENTS_EXCHANGE
    assert queue.routing_key == "mail.received"
    assert queue.durable


def test_retry_queues_hand_events_back_to_the_work_queue_after_their_delay():
    queue = ConsumerSpec("scan", "mail.received").retry_queue(30)
    assert queue.name == "scan.mail.received.retry.30s"
    assert queue.queue_arguments == {
        "x-message-ttl": 30000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "scan.mail.received",
    }


def test_dead_letter_queue_is_bound_to_the_dead_letter_exchange_by_queue_name():
    queue = ConsumerSpec("scan", "mail.received").dead_letter_queue()
    assert queue.name == "scan.mail.received.dead"
    assert queue.exchange == DEAD_LETTER_EXCHANGE
    assert queue.routing_key == "scan.mail.received"


def test_every_consumer_is_unique_and_consumes_a_known_event():
    from common.events import EVENT_TYPES

    assert len({spec.queue_name for spec in CONSUMERS}) == len(CONSUMERS)
    assert all(spec.event_type in EVENT_TYPES for spec in CONSUMERS)
    assert consumer("scan", "mail.received").queue_name == "scan.mail.received"
