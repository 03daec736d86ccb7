"""An event whose connection is gone when it is acked does not stop the service (common.bus).

When the broker restarts while a worker finishes, acking the event on the dead channel raises. The broker
has already requeued it (it was never acked) and delivers it again, so the consumer logs that and goes
on: an exception there would kill the nameko container, and with it the whole service.
"""

from __future__ import annotations

from unittest import mock

from common.bus import EventConsumer, PublishError, _Delivery
from common.events import Envelope
from common.topology import consumer

EVENT = Envelope.new(
    "mail.received",
    {
        "message_id": "m1",
        "sender": "a@ac-montpellier.fr",
        "recipients": ["b@ac-montpellier.fr"],
        "origin": "mx",
        "size": 3,
    },
    source="ingest",
)


def make_consumer() -> EventConsumer:
    entrypoint = EventConsumer("mail.received")
    entrypoint.spec = consumer("scan", "mail.received")
    entrypoint.queue_consumer = mock.Mock()
    entrypoint.queue_consumer.ack_message.side_effect = ConnectionResetError(104, "Connection reset by peer")
    entrypoint.queue_consumer.requeue_message.side_effect = ConnectionResetError(104, "Connection reset")
    return entrypoint


def test_an_ack_on_a_lost_connection_is_logged_not_raised(caplog):
    entrypoint = make_consumer()
    message = mock.Mock(headers={})
    delivery = _Delivery(message)
    assert entrypoint.handle_result(delivery, EVENT, worker_ctx=None, result="done") == ("done", None)
    entrypoint.queue_consumer.ack_message.assert_called_once_with(message)
    assert "delivers it again" in caplog.text


def test_a_requeue_on_a_lost_connection_is_logged_not_raised(caplog):
    entrypoint = make_consumer()
    entrypoint.republisher = mock.Mock()
    entrypoint.republisher.publish_envelope.side_effect = PublishError("broker away")
    entrypoint.delays, entrypoint.max_attempts = (1,), 5
    message = mock.Mock(headers={})
    try:
        raise RuntimeError("handler failed")
    except RuntimeError as exc:
        exc_info = (type(exc), exc, exc.__traceback__)
    entrypoint.handle_result(_Delivery(message), EVENT, worker_ctx=None, exc_info=exc_info)
    entrypoint.queue_consumer.requeue_message.assert_called_once_with(message)
    assert "requeue" in caplog.text
