"""Publishing and consuming events on RabbitMQ.

`EventPublisher` publishes an `Envelope` to the `mail.events` exchange, persistent, with publisher
confirms and `mandatory` routing: `publish()` returns only once the broker has taken responsibility for
the event, and raises `PublishError` if it was nacked, timed out, or routed to no queue at all. It keeps a
small pool of connections ("lanes"), each with its own channel, so threads (or green threads) publish in
parallel without opening a connection per event. It is plain kombu, usable from any service: nameko
services through `EventPublisherProvider`, asyncio services through `loop.run_in_executor`.

`event_handler(event_type)` is a nameko entrypoint consuming the service's own durable queue (declared
by `common.topology`). The decorated method receives a validated `Envelope`. The runner owns everything
but the decision: the event is acked only after the method returns; if it raises, the event goes to a
retry queue with back-off (EVENT_RETRY_DELAYS) and, after EVENT_MAX_ATTEMPTS attempts, to the consumer's
dead-letter queue with the failure reason in its headers. An envelope that cannot be parsed goes straight
to the dead-letter queue. If even that re-publication fails, the event is requeued, never dropped.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import queue
import threading
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

from kombu import Connection, Producer
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer, QueueConsumer
from prometheus_client import Counter, Histogram

from common.config import get_settings
from common.errors import PermanentFailure
from common.events import Envelope, InvalidEvent
from common.logs import trace_context
from common.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, ConsumerSpec, consumer, declare

log = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter("bus_events_published_total", "Events confirmed by the broker.", ["type"])
PUBLISH_FAILURES = Counter(
    "bus_publish_failures_total", "Events the broker did not confirm.", ["type", "reason"]
)
PUBLISH_SECONDS = Histogram(
    "bus_publish_seconds",
    "Time from publish to broker confirm.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
EVENTS_HANDLED = Counter(
    "bus_events_handled_total", "Events handled by a consumer, by outcome.", ["queue", "outcome"]
)
HANDLER_SECONDS = Histogram(
    "bus_handler_seconds",
    "Time spent in an event handler.",
    ["queue"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

#: Headers carried by retried and dead-lettered events.
ATTEMPTS_HEADER = "x-attempts"
REASON_HEADER = "x-failure-reason"
QUEUE_HEADER = "x-original-queue"
FAILED_AT_HEADER = "x-failed-at"

_DERIVED_NAMESPACE = uuid.UUID("6f1d8c1e-3b5a-4d4e-9a57-0c2f7f6f1a10")


class PublishError(RuntimeError):
    """The broker did not take responsibility for an event (unroutable, nacked, unreachable)."""


def derived_event_id(parent: Envelope, event_type: str, key: str = "") -> str:
    """A deterministic id for an event produced while handling `parent`.

    A handler that runs twice for the same parent (a redelivery after a crash) publishes the same event
    id twice, which downstream consumers recognise as a duplicate.
    """
    return uuid.uuid5(_DERIVED_NAMESPACE, f"{parent.event_id}/{event_type}/{key}").hex


class _Lane:
    """One connection and channel used by one publisher at a time."""

    def __init__(self, url: str):
        self.connection = Connection(url, transport_options={"confirm_publish": True}, connect_timeout=5)
        self.connection.ensure_connection(max_retries=1)
        self.returned: list[str] = []
        self.producer = Producer(self.connection.channel(), on_return=self._on_return)

    def _on_return(self, exception, exchange, routing_key, message) -> None:
        # basic.return arrives before the confirm; remember it and fail the publish afterwards, which
        # keeps the channel's confirm sequence in step (raising here would not).
        self.returned.append(f"{exception} (exchange {exchange!r}, routing key {routing_key!r})")

    def close(self) -> None:
        try:
            self.connection.release()
        except Exception:
            log.debug("error closing a publisher connection", exc_info=True)


class EventPublisher:
    """Publishes envelopes with confirms and mandatory routing; thread-safe and pooled."""

    def __init__(
        self, source: str, amqp_url: str | None = None, pool_size: int = 8, timeout: float | None = None
    ):
        settings = get_settings()
        self.source = source
        self.url = amqp_url or settings.amqp_url
        self.timeout = timeout or settings.publish_timeout
        self._idle: queue.LifoQueue[_Lane] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False
        self._declared = False

    def publish(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        *,
        trace_id: str | None = None,
        event_id: str | None = None,
    ) -> Envelope:
        """Validate, publish and wait for the broker's confirm; returns the envelope sent."""
        envelope = Envelope.new(event_type, payload, self.source, trace_id=trace_id)
        if event_id is not None:
            envelope = Envelope.from_wire({**envelope.to_dict(), "event_id": event_id})
        self.publish_envelope(envelope)
        return envelope

    def publish_envelope(
        self,
        envelope: Envelope,
        *,
        exchange=EVENTS_EXCHANGE,
        routing_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish an already built envelope (also used for retries and dead letters)."""
        if self._closed:
            raise PublishError("publisher is closed")
        body = envelope.to_json()
        properties = {
            "delivery_mode": 2,
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "message_id": envelope.event_id,
            "type": envelope.type,
            "headers": {"x-trace-id": envelope.trace_id, **(headers or {})},
        }
        last_error: Exception | None = None
        # One retry on a fresh connection: a pooled connection may have died since its last use.
        for _attempt in range(2):
            with self._slots:
                try:
                    lane = self._idle.get_nowait()
                except queue.Empty:
                    try:
                        if not self._declared:
                            # Producers declare the whole topology too, so an event published before
                            # its consumers ever ran still has queues to wait in.
                            self.declare()
                            self._declared = True
                        lane = _Lane(self.url)
                    except Exception as exc:
                        PUBLISH_FAILURES.labels(envelope.type, "connect").inc()
                        raise PublishError(f"cannot reach the broker: {exc}") from exc
                lane.returned.clear()
                try:
                    with PUBLISH_SECONDS.time():
                        lane.producer.publish(
                            body,
                            exchange=exchange,
                            routing_key=routing_key or envelope.type,
                            mandatory=True,
                            retry=False,
                            timeout=self.timeout,
                            declare=[exchange] if exchange is not None and exchange.name else [],
                            **properties,
                        )
                except Exception as exc:  # noqa: BLE001 - any failure leaves the lane unusable
                    lane.close()
                    last_error = exc
                    continue
                returned = list(lane.returned)
                self._idle.put(lane)
            if returned:
                PUBLISH_FAILURES.labels(envelope.type, "unroutable").inc()
                raise PublishError(f"event {envelope.type} routes to no queue: {returned[0]}")
            EVENTS_PUBLISHED.labels(envelope.type).inc()
            return
        PUBLISH_FAILURES.labels(envelope.type, "broker").inc()
        raise PublishError(f"broker did not confirm {envelope.type}: {last_error}") from last_error

    def declare(self, specs: tuple[ConsumerSpec, ...] | None = None) -> None:
        """Declare the topology (all consumers by default) on the broker."""
        from common.topology import CONSUMERS

        with Connection(self.url, connect_timeout=5) as conn:
            declare(conn.default_channel, specs or CONSUMERS, get_settings().retry_delay_seconds())

    def close(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break


class EventPublisherProvider(DependencyProvider):
    """nameko dependency: `self.publisher.publish(type, payload, parent=envelope)` in a handler."""

    def setup(self) -> None:
        self.publisher = EventPublisher(
            source=self.container.service_name, amqp_url=self.container.config.get("AMQP_URI")
        )

    def stop(self) -> None:
        self.publisher.close()

    def kill(self) -> None:
        self.publisher.close()

    def get_dependency(self, worker_ctx) -> _BoundPublisher:
        return _BoundPublisher(self.publisher)


class _BoundPublisher:
    """What a handler sees: publishing that inherits the trace id and a derived event id."""

    def __init__(self, publisher: EventPublisher):
        self._publisher = publisher

    def publish(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        parent: Envelope | None = None,
        key: str = "",
        trace_id: str | None = None,
    ) -> Envelope:
        """Publish `event_type`; with `parent`, reuse its trace id and derive a stable event id.

        Without a parent, a `key` gives a stable id too (uuid5 of type and key), for effects that have a
        natural unique key of their own.
        """
        if parent is None:
            event_id = uuid.uuid5(_DERIVED_NAMESPACE, f"{event_type}/{key}").hex if key else None
            return self._publisher.publish(event_type, payload, trace_id=trace_id or None, event_id=event_id)
        return self._publisher.publish(
            event_type,
            payload,
            trace_id=parent.trace_id,
            event_id=derived_event_id(parent, event_type, key),
        )


class EventQueueConsumer(QueueConsumer):
    """nameko's shared queue consumer, except that an undecodable message is dead-lettered, not dropped.

    kombu's default reaction to a body it cannot decode (bad JSON, a content type we do not accept) is to
    log it and ack it, which would lose the message without a trace.
    """

    def get_consumers(self, consumer_cls, channel):
        for provider in self._providers:
            kombu_consumer = consumer_cls(
                queues=[provider.queue],
                callbacks=[functools.partial(self.handle_message, provider)],
                accept=self.accept,
                on_decode_error=provider.on_undecodable,
            )
            kombu_consumer.qos(prefetch_count=self.prefetch_count)
            self._consumers[provider] = kombu_consumer
        return self._consumers.values()


class EventConsumer(Consumer):
    """nameko entrypoint: consume one event type from this service's queue, with retries and DLQ."""

    queue_consumer = EventQueueConsumer()

    def __init__(self, event_type: str, max_attempts: int | None = None, **kwargs):
        self.event_type = event_type
        self.attempts_override = max_attempts
        self.spec: ConsumerSpec | None = None
        super().__init__(queue=None, requeue_on_error=False, **kwargs)

    def setup(self) -> None:
        settings = get_settings()
        self.spec = consumer(self.container.service_name, self.event_type)
        self.queue = self.spec.queue()
        self.delays = settings.retry_delay_seconds()
        self.max_attempts = max(1, self.attempts_override or settings.max_attempts)
        self.republisher = EventPublisher(source=self.container.service_name, amqp_url=self.amqp_uri)
        with Connection(self.amqp_uri, connect_timeout=5) as conn:
            declare(conn.default_channel, [self.spec], self.delays)
        super().setup()

    @property
    def amqp_uri(self) -> str:
        return self.container.config["AMQP_URI"]

    def stop(self) -> None:
        super().stop()
        self.republisher.close()

    def handle_message(self, body, message) -> None:
        try:
            envelope = Envelope.from_wire(message.body if isinstance(message.body, bytes | str) else body)
            if envelope.type != self.event_type:
                raise InvalidEvent(f"queue {self.spec.queue_name} received a {envelope.type} event")
        except InvalidEvent as exc:
            self._dead_letter_raw(message, f"invalid envelope: {exc}")
            return
        handle_result = functools.partial(self.handle_result, message, envelope)
        try:
            self.container.spawn_worker(self, (envelope,), {}, context_data={}, handle_result=handle_result)
        except Exception:  # noqa: BLE001 - container being killed: give the message back
            self._settle(message, requeue=True)

    def _settle(self, message, requeue: bool = False) -> None:
        """Ack (or requeue) `message`. If the connection it came on is gone (the broker restarted), the
        broker has already put it back in the queue and delivers it again (handlers are idempotent):
        that is logged, not raised, since an exception here would stop the whole service."""
        try:
            if requeue:
                self.queue_consumer.requeue_message(message)
            else:
                self.queue_consumer.ack_message(message)
        except Exception:  # the message's channel is gone; the broker redelivers it
            log.warning(
                "cannot %s an event: its connection to the broker is gone; the broker delivers it again",
                "requeue" if requeue else "ack",
                extra={"queue": self.spec.queue_name if self.spec else ""},
                exc_info=True,
            )

    def on_undecodable(self, message, exc: Exception) -> None:
        """kombu could not decode the body: dead-letter it with the reason."""
        self._dead_letter_raw(message, f"invalid envelope: {type(exc).__name__}: {exc}")

    def handle_result(self, message, envelope: Envelope, worker_ctx, result=None, exc_info=None):
        queue_name = self.spec.queue_name
        if exc_info is None:
            EVENTS_HANDLED.labels(queue_name, "ok").inc()
            self._settle(message)
            return result, exc_info
        attempts = int((message.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1
        permanent = issubclass(exc_info[0], PermanentFailure)
        reason = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()
        headers = {
            ATTEMPTS_HEADER: attempts,
            REASON_HEADER: reason[:1000],
            QUEUE_HEADER: queue_name,
            FAILED_AT_HEADER: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            if permanent or attempts >= self.max_attempts:
                self.republisher.publish_envelope(
                    envelope, exchange=DEAD_LETTER_EXCHANGE, routing_key=queue_name, headers=headers
                )
                EVENTS_HANDLED.labels(queue_name, "dead_lettered").inc()
                log.error(
                    "event dead-lettered after %d attempts: %s",
                    attempts,
                    reason,
                    extra={"event_id": envelope.event_id, "queue": queue_name, "trace_id": envelope.trace_id},
                )
            else:
                delay = self.delays[min(attempts - 1, len(self.delays) - 1)]
                self.republisher.publish_envelope(
                    envelope, exchange=None, routing_key=self.spec.retry_queue_name(delay), headers=headers
                )
                EVENTS_HANDLED.labels(queue_name, "retried").inc()
                log.warning(
                    "event handler failed (attempt %d of %d), retrying in %ds: %s",
                    attempts,
                    self.max_attempts,
                    delay,
                    reason,
                    extra={"event_id": envelope.event_id, "queue": queue_name, "trace_id": envelope.trace_id},
                )
        except PublishError:
            log.exception("cannot re-publish a failed event; requeueing it", extra={"queue": queue_name})
            self._settle(message, requeue=True)
            return result, exc_info
        self._settle(message)
        return result, exc_info

    def _dead_letter_raw(self, message, reason: str) -> None:
        """Send an unparseable message to the dead-letter queue as it came, with the reason."""
        queue_name = self.spec.queue_name
        log.error("dead-lettering an unparseable event: %s", reason, extra={"queue": queue_name})
        headers = {
            ATTEMPTS_HEADER: 0,
            REASON_HEADER: reason[:1000],
            QUEUE_HEADER: queue_name,
            FAILED_AT_HEADER: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            with Connection(
                self.amqp_uri, transport_options={"confirm_publish": True}, connect_timeout=5
            ) as conn:
                Producer(conn.default_channel).publish(
                    message.body,
                    exchange=DEAD_LETTER_EXCHANGE,
                    routing_key=queue_name,
                    mandatory=True,
                    delivery_mode=2,
                    content_type=message.content_type or "application/octet-stream",
                    headers=headers,
                    retry=False,
                )
        except Exception:
            log.exception("cannot dead-letter an unparseable event; requeueing it")
            self._settle(message, requeue=True)
            return
        EVENTS_HANDLED.labels(queue_name, "invalid").inc()
        self._settle(message)


def event_handler(event_type: str, max_attempts: int | None = None):
    """Decorate a nameko service method as the handler of `event_type` (see EventConsumer).

    The method runs with the event's trace id attached to every log record, and its duration is
    recorded in `bus_handler_seconds`. `max_attempts` overrides EVENT_MAX_ATTEMPTS for this handler.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def traced(self, envelope: Envelope):
            with trace_context(envelope.trace_id):
                with HANDLER_SECONDS.labels(f"{self.name}.{event_type}").time():
                    return fn(self, envelope)

        return EventConsumer.decorator(event_type, max_attempts=max_attempts)(traced)

    return decorate
