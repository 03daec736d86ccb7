"""Publishing and consuming events on RabbitMQ.

`EventPublisher` publishes an `Envelope` to the `mail.events` exchange, persistent, with publisher
confirms and `mandatory` routing: `publish()` returns only once the broker has taken responsibility for
the event, and raises `PublishError` if it was nacked, timed out, or routed to no queue at all. Concurrent
publishes share one connection and are group-committed: written together, their confirms awaited
together, the events of one type among them sharing messages of up to `WIRE_BATCH_MAX` envelopes
(`_wire_messages`). It is plain kombu and py-amqp, usable from any service: nameko services through
`EventPublisherProvider`, asyncio services through `loop.run_in_executor`.

`event_handler(event_type)` is a nameko entrypoint consuming the service's own durable queue (declared
by `common.topology`). The decorated method receives a validated `Envelope`, one call per envelope of a
message that carries several. The runner owns everything but the decision: the event is acked only after
the method returns (a message of several, once all of its events are); if it raises, the event goes to a
retry queue with back-off (EVENT_RETRY_DELAYS) and, after EVENT_MAX_ATTEMPTS attempts, to the consumer's
dead-letter queue with the failure reason in its headers. An envelope that cannot be parsed goes straight
to the dead-letter queue. If even that re-publication fails, the event is requeued, never dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import socket
import time
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

import amqp
from kombu import Connection, Producer
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer, QueueConsumer
from prometheus_client import Counter, Histogram

from common.config import get_settings
from common.errors import PermanentFailure
from common.events import (
    MAX_ENVELOPE_BYTES,
    WIRE_BATCH_MAX,
    Envelope,
    InvalidEvent,
    wire_body,
    wire_items,
)
from common.groupcommit import GroupCommit
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

BATCH_SIZE = Histogram(
    "bus_batch_size",
    "Events handed to a batch handler in one call.",
    ["queue"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)

#: Headers carried by retried and dead-lettered events.
ATTEMPTS_HEADER = "x-attempts"
REASON_HEADER = "x-failure-reason"
QUEUE_HEADER = "x-original-queue"
FAILED_AT_HEADER = "x-failed-at"

_DERIVED_NAMESPACE = uuid.UUID("6f1d8c1e-3b5a-4d4e-9a57-0c2f7f6f1a10")

#: Bytes py-amqp asks its TCP socket for when it needs fewer (`read_ahead`).
AMQP_READ_AHEAD = 8192


def read_ahead(transport_class=amqp.transport.TCPTransport) -> None:
    """Let py-amqp read its TCP socket `AMQP_READ_AHEAD` bytes at a time instead of exactly what the next
    read needs (applied once, when this module is imported).

    py-amqp reads a frame in three exact reads (header, payload, end byte), one `recv` each: nine system
    calls for a delivered event (three frames), through eventlet's green sockets in the nameko services.
    Its `_read` keeps what a `recv` returned beyond the bytes it asked for, for the next read, so asking
    for more only lets one `recv` serve many frames; what is returned, frame by frame, is unchanged.
    Receiving an event cost 39–51 µs of CPU, 22–26 µs reading ahead (BENCHMARKS.md, issue 5).
    """
    setup = transport_class._setup_transport
    if getattr(setup, "reads_ahead", False):
        return

    def _setup_transport(self) -> None:
        setup(self)
        recv = self.sock.recv
        self._quick_recv = lambda size: recv(size if size > AMQP_READ_AHEAD else AMQP_READ_AHEAD)

    _setup_transport.reads_ahead = True  # type: ignore[attr-defined]
    transport_class._setup_transport = _setup_transport


read_ahead()


class PublishError(RuntimeError):
    """The broker did not take responsibility for an event; `reason` is one of "unroutable", "nacked",
    "connect" (the broker could not be reached) and "broker" (no confirm: a lost connection, a time-out)."""

    def __init__(self, message: str, reason: str = "broker"):
        super().__init__(message)
        self.reason = reason


def derived_event_id(parent: Envelope, event_type: str, key: str = "") -> str:
    """A deterministic id for an event produced while handling `parent`.

    A handler that runs twice for the same parent (a redelivery after a crash) publishes the same event
    id twice, which downstream consumers recognise as a duplicate.
    """
    return uuid.uuid5(_DERIVED_NAMESPACE, f"{parent.event_id}/{event_type}/{key}").hex


@contextlib.contextmanager
def corked(connection):
    """Hold a py-amqp connection's small writes in the kernel until the block ends (Linux TCP_CORK): the
    frames of many publishes, or many acks, leave as one segment instead of one each, which saves the
    sender and the broker a wake-up per frame."""
    sock = getattr(getattr(connection, "transport", None), "sock", None)
    cork = getattr(socket, "TCP_CORK", None)
    if sock is None or cork is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


@dataclasses.dataclass(slots=True)
class _Outgoing:
    """One event waiting for the next group publish."""

    envelope: Envelope
    exchange: Any  # a kombu Exchange, or None for the default exchange
    routing_key: str
    headers: Mapping[str, Any]


@dataclasses.dataclass(slots=True)
class _Wire:
    """One AMQP message of a group publish and the items (indexes in the group) it carries."""

    items: list[int]
    exchange: Any
    routing_key: str
    message: amqp.Message


def _wire_messages(items: list[_Outgoing]) -> list[_Wire]:
    """The AMQP messages that carry `items`.

    Events of one type published to `mail.events` together, without headers of their own, travel as
    batches: up to `WIRE_BATCH_MAX` envelopes and `MAX_ENVELOPE_BYTES` in one message whose body is
    their JSON array (`common.events.wire_body`). The broker then stores, routes, delivers and confirms
    one message for several events, and each consumer receives and acks one (docs/events.md,
    "Transport"). Retried and dead-lettered events (with headers) and lone events travel alone, their
    body the envelope itself.
    """
    wires: list[_Wire] = []
    by_type: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if item.exchange is EVENTS_EXCHANGE and not item.headers:
            by_type.setdefault(item.routing_key, []).append(index)
        else:
            wires.append(_wire(items, [index], [item.envelope.to_json()]))
    for indexes in by_type.values():
        encoded = [items[index].envelope.to_json() for index in indexes]
        start, size = 0, 0
        for position, body in enumerate(encoded):
            if position > start and (
                position - start == WIRE_BATCH_MAX or size + len(body) + 1 > MAX_ENVELOPE_BYTES
            ):
                wires.append(_wire(items, indexes[start:position], encoded[start:position]))
                start, size = position, 0
            size += len(body) + 1
        wires.append(_wire(items, indexes[start:], encoded[start:]))
    return wires


def _wire(items: list[_Outgoing], indexes: list[int], encoded: list[bytes]) -> _Wire:
    """The message carrying the items at `indexes`, whose envelopes `encoded` holds."""
    first = items[indexes[0]]
    envelope = first.envelope
    if len(indexes) == 1:
        message_id, headers = envelope.event_id, {"x-trace-id": envelope.trace_id, **first.headers}
    else:
        message_id, headers = uuid.uuid4().hex, {"x-event-count": len(indexes)}
    message = amqp.Message(
        wire_body(encoded),
        delivery_mode=2,
        content_type="application/json",
        content_encoding="utf-8",
        message_id=message_id,
        type=envelope.type,
        application_headers=headers,
    )
    return _Wire(indexes, first.exchange, first.routing_key, message)


class _Lane:
    """One connection and its channel in confirm mode, used by one group publish at a time.

    Publishes are pipelined: a group's messages are written one after the other, then the broker's
    confirms (`basic.ack` / `basic.nack`, each for one message or, with `multiple`, for every message up
    to it) are awaited together. In confirm mode the channel numbers its messages from 1, which is how a
    confirm is matched to its message; a `basic.return` (unroutable, `mandatory`) comes before the
    confirm of the same message and names it by its message id.
    """

    def __init__(self, url: str):
        self.connection = Connection(url, connect_timeout=5)
        self.connection.ensure_connection(max_retries=1)
        self.channel = self.connection.default_channel
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.channel.events["basic_return"].add(self._on_return)
        self.sent = 0  # delivery tag of the last message written
        self.unsettled: set[int] = set()
        self.nacked: set[int] = set()
        self.returned: dict[str, str] = {}  # message id -> why the broker could not route it
        self.declared: set[str] = set()

    def _settle(self, tag: int, multiple: bool, nacked: bool) -> None:
        tags = {t for t in self.unsettled if t <= tag} if multiple else {tag} & self.unsettled
        self.unsettled -= tags
        if nacked:
            self.nacked |= tags

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, nacked=False)

    def _on_nack(self, tag: int, multiple: bool, *_: Any) -> None:
        self._settle(tag, multiple, nacked=True)

    def _on_return(self, exception, exchange, routing_key, message) -> None:
        message_id = (getattr(message, "properties", None) or {}).get("message_id", "")
        self.returned[message_id] = f"{exception} (exchange {exchange!r}, routing key {routing_key!r})"

    def _write(self, wires: list[_Wire]) -> None:
        for wire in wires:
            exchange = wire.exchange.name if wire.exchange is not None else ""
            if exchange and exchange not in self.declared:
                # Once per connection, as kombu's producers did: the exchange exists even on a broker
                # whose definitions were lost.
                wire.exchange(self.channel).declare()
                self.declared.add(exchange)
            self.sent += 1
            self.unsettled.add(self.sent)
            self.channel.basic_publish(wire.message, exchange, wire.routing_key, mandatory=True)

    def publish(self, items: list[_Outgoing], timeout: float) -> list[Exception | None]:
        """Write every item, then wait for all their confirms; one outcome per item (None: confirmed)."""
        self.returned.clear()
        self.nacked.clear()
        wires = _wire_messages(items)
        first = self.sent + 1
        with corked(self.connection.connection):
            self._write(wires)
        deadline = time.monotonic() + timeout
        while self.unsettled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no confirm within {timeout:g}s")
            self.connection.drain_events(timeout=remaining)
        outcomes: list[Exception | None] = [None] * len(items)
        for tag, wire in enumerate(wires, start=first):
            returned = self.returned.get(wire.message.properties["message_id"])
            for index in wire.items:
                event_type = items[index].envelope.type
                if returned is not None:
                    outcomes[index] = PublishError(
                        f"event {event_type} routes to no queue: {returned}", "unroutable"
                    )
                elif tag in self.nacked:
                    outcomes[index] = PublishError(
                        f"the broker refused event {event_type} (basic.nack)", "nacked"
                    )
        return outcomes

    def close(self) -> None:
        try:
            self.connection.release()
        except Exception:
            log.debug("error closing a publisher connection", exc_info=True)


class EventPublisher:
    """Publishes envelopes with confirms and mandatory routing; thread-safe.

    Concurrent publishes (threads, or a nameko service's green threads) are group-committed
    (`common.groupcommit`): the events asked while a group waits for its confirms are written together
    on one connection and their confirms awaited together, and each caller returns only once its own
    event is confirmed. Waiting for each confirm before writing the next event cost the broker about
    five times more CPU per event (BENCHMARKS.md, issue 5).
    """

    def __init__(self, source: str, amqp_url: str | None = None, timeout: float | None = None):
        settings = get_settings()
        self.source = source
        self.url = amqp_url or settings.amqp_url
        self.timeout = timeout or settings.publish_timeout
        self._lane: _Lane | None = None
        self._group: GroupCommit[_Outgoing, Exception | None] = GroupCommit(
            self._publish_group, max_batch=256
        )
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
        envelope = Envelope.new(event_type, payload, self.source, trace_id=trace_id, event_id=event_id)
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
        item = _Outgoing(envelope, exchange, routing_key or envelope.type, dict(headers or {}))
        outcome = self._submit([item])[0]
        if outcome is not None:
            raise outcome

    def publish_many(self, envelopes: list[Envelope]) -> list[PublishError | None]:
        """Publish several envelopes in one group; one outcome per envelope (None: confirmed).

        For a handler that produces many events at once: they are written together and their confirms
        awaited together, instead of one group per event in turn.
        """
        return self._submit(
            [_Outgoing(envelope, EVENTS_EXCHANGE, envelope.type, {}) for envelope in envelopes]
        )

    def _submit(self, items: list[_Outgoing]) -> list[PublishError | None]:
        """Hand `items` to the next group publish; counts each outcome in the metrics."""
        if self._closed:
            raise PublishError("publisher is closed")
        with PUBLISH_SECONDS.time():
            outcomes = self._group.submit(items)
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome is None:
                EVENTS_PUBLISHED.labels(item.envelope.type).inc()
            else:
                PUBLISH_FAILURES.labels(item.envelope.type, outcome.reason).inc()
        return outcomes

    def _publish_group(self, items: list[_Outgoing]) -> list[Exception | None]:
        """Publish a group on the pooled connection; one retry on a fresh one, which may have died."""
        last_error: BaseException | None = None
        for _attempt in range(2):
            if self._lane is None:
                try:
                    if not self._declared:
                        # Producers declare the whole topology too, so an event published before its
                        # consumers ever ran still has queues to wait in.
                        self.declare()
                        self._declared = True
                    self._lane = _Lane(self.url)
                except Exception as exc:  # noqa: BLE001 - every cause answers "cannot reach"
                    return [PublishError(f"cannot reach the broker: {exc}", "connect")] * len(items)
            try:
                return self._lane.publish(items, self.timeout)
            except BaseException as exc:  # any failure (or a kill) leaves the lane unusable
                self._lane.close()
                self._lane = None
                if not isinstance(exc, Exception):
                    raise
                last_error = exc
        return [PublishError(f"broker did not confirm: {last_error}", "broker")] * len(items)

    def declare(self, specs: tuple[ConsumerSpec, ...] | None = None) -> None:
        """Declare the topology (all consumers by default) on the broker."""
        from common.topology import CONSUMERS

        with Connection(self.url, connect_timeout=5) as conn:
            declare(conn.default_channel, specs or CONSUMERS, get_settings().retry_delay_seconds())

    def close(self) -> None:
        """Close the pooled connection."""
        self._closed = True
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.close()


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

    def envelope(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        parent: Envelope | None = None,
        key: str = "",
        trace_id: str | None = None,
    ) -> Envelope:
        """The envelope of `event_type`; with `parent`, with its trace id and a stable event id derived
        from it. Without a parent, a `key` gives a stable id too (uuid5 of type and key), for effects
        that have a natural unique key of their own."""
        if parent is None:
            event_id = uuid.uuid5(_DERIVED_NAMESPACE, f"{event_type}/{key}").hex if key else None
        else:
            trace_id, event_id = parent.trace_id, derived_event_id(parent, event_type, key)
        return Envelope.new(event_type, payload, self._publisher.source, trace_id=trace_id, event_id=event_id)

    def publish(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        parent: Envelope | None = None,
        key: str = "",
        trace_id: str | None = None,
    ) -> Envelope:
        """Publish the envelope `envelope()` builds and wait for its confirm; returns it."""
        envelope = self.envelope(event_type, payload, parent=parent, key=key, trace_id=trace_id)
        self._publisher.publish_envelope(envelope)
        return envelope

    def publish_many(self, envelopes: list[Envelope]) -> list[PublishError | None]:
        """Publish envelopes built with `envelope()` together; one outcome per envelope."""
        return self._publisher.publish_many(envelopes) if envelopes else []

    def publish_batch(self, events: list[tuple[int, Envelope]], outcomes: list[Exception | None]) -> None:
        """Publish a batch handler's events, each paired with the index of the event it came from,
        together; a refused one becomes that event's outcome unless the event had already failed."""
        failures = self.publish_many([event for _, event in events])
        for (index, _), failure in zip(events, failures, strict=True):
            outcomes[index] = outcomes[index] or failure


class EventQueueConsumer(QueueConsumer):
    """nameko's shared queue consumer, except that kombu does not decode the bodies: each event's raw
    bytes go to its entrypoint, which parses them once (`Envelope.from_wire`) and dead-letters what is
    not an envelope (`EventConsumer._receive`).

    kombu would otherwise parse each body's JSON too, only for the entrypoint to parse it again, and its
    reaction to a body it cannot decode (bad JSON, a content type we do not accept) is to log it and ack
    it, which would lose the message without a trace.
    """

    def get_consumers(self, consumer_cls, channel):
        # One prefetch for the channel's consumers (RabbitMQ applies the last one set to every consumer
        # of a channel): enough for a batch handler's batches when there is one.
        prefetch = max([self.prefetch_count, *(getattr(p, "prefetch", 0) for p in self._providers)])
        for provider in self._providers:
            kombu_consumer = consumer_cls(
                queues=[provider.queue],
                on_message=functools.partial(self.handle_raw_message, provider),
                accept=self.accept,
                on_decode_error=provider.on_undecodable,
            )
            kombu_consumer.qos(prefetch_count=prefetch)
            self._consumers[provider] = kombu_consumer
        return self._consumers.values()

    def handle_raw_message(self, provider, message):
        self.handle_message(provider, None, message)

    def handle_message(self, provider, body, message):
        if isinstance(provider, BatchEventConsumer):
            # Only parses and queues the event: no green thread of its own.
            provider.handle_message(body, message)
        else:
            super().handle_message(provider, body, message)


class _Delivery:
    """A message taken from a queue and how many of the envelopes it carries are not concluded yet: it
    is acked once all are, or requeued (every envelope of it delivered again) if any of them asked."""

    __slots__ = ("message", "pending", "requeue")

    def __init__(self, message, pending: int = 1):
        self.message, self.pending, self.requeue = message, pending, False


class EventConsumer(Consumer):
    """nameko entrypoint: consume one event type from this service's queue, with retries and DLQ.

    A message carrying a batch of envelopes (`common.events.wire_items`) gives one handler call per
    envelope, each concluded on its own; the message is acked once all of them are.
    """

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
        delivery, envelopes = self._receive(message)
        for envelope in envelopes:
            handle_result = functools.partial(self.handle_result, delivery, envelope)
            try:
                self.container.spawn_worker(
                    self, (envelope,), {}, context_data={}, handle_result=handle_result
                )
            except Exception:  # noqa: BLE001 - container being killed: give the message back
                self._settle(delivery, requeue=True)

    def _settle(self, delivery: _Delivery, requeue: bool = False) -> None:
        """One envelope of `delivery` is concluded; once all are, ack its message, or requeue it if any
        envelope asked to. If the connection it came on is gone (the broker restarted), the broker has
        already put it back in the queue and delivers it again (handlers are idempotent): that is
        logged, not raised, since an exception here would stop the whole service."""
        delivery.requeue = delivery.requeue or requeue
        delivery.pending -= 1
        if delivery.pending > 0:
            return
        requeue, message = delivery.requeue, delivery.message
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
        self._dead_letter_raw(_Delivery(message), f"invalid envelope: {type(exc).__name__}: {exc}")

    def handle_result(self, delivery: _Delivery, envelope: Envelope, worker_ctx, result=None, exc_info=None):
        self._conclude(delivery, envelope, exc_info)
        return result, exc_info

    def _receive(self, message) -> tuple[_Delivery, list[Envelope]]:
        """The message and the envelopes it carries. What cannot be an envelope is dead-lettered with
        the reason: the whole message as it came when its body is unusable, else each invalid element
        of a batch on its own, the others being handled."""
        try:
            if not isinstance(message.body, bytes | str):
                raise InvalidEvent(f"a body of type {type(message.body).__name__}, not bytes")
            items = wire_items(message.body)
        except InvalidEvent as exc:
            self._dead_letter_raw(_Delivery(message), f"invalid envelope: {exc}")
            return _Delivery(message, 0), []
        delivery, envelopes = _Delivery(message, len(items)), []
        for item in items:
            try:
                envelope = Envelope.from_wire(item)
                if envelope.type != self.event_type:
                    raise InvalidEvent(f"queue {self.spec.queue_name} received a {envelope.type} event")
            except InvalidEvent as exc:
                body = message.body if len(items) == 1 else json.dumps(item, ensure_ascii=False).encode()
                self._dead_letter_raw(delivery, f"invalid envelope: {exc}", body)
                continue
            envelopes.append(envelope)
        return delivery, envelopes

    def _conclude(self, delivery: _Delivery, envelope: Envelope, exc_info=None) -> None:
        """Ack a handled event; retry or dead-letter a failed one, then ack it (requeue if that fails)."""
        queue_name = self.spec.queue_name
        if exc_info is None:
            EVENTS_HANDLED.labels(queue_name, "ok").inc()
            self._settle(delivery)
            return
        attempts = int((delivery.message.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1
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
            self._settle(delivery, requeue=True)
            return
        self._settle(delivery)

    def _dead_letter_raw(self, delivery: _Delivery, reason: str, body: bytes | None = None) -> None:
        """Send what could not be an envelope to the dead-letter queue, with the reason: `body` (one
        element of a batch) or, by default, the message as it came."""
        message = delivery.message
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
                    message.body if body is None else body,
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
            self._settle(delivery, requeue=True)
            return
        EVENTS_HANDLED.labels(queue_name, "invalid").inc()
        self._settle(delivery)


class BatchEventConsumer(EventConsumer):
    """nameko entrypoint: like `EventConsumer`, but the handler gets the waiting events as a list.

    Events are queued as they arrive; whenever fewer than `concurrency` batches are being handled, the
    queued events (up to `max_batch`) go to a worker as one batch. Batches therefore grow with the
    load, as in a group commit: a lone event is handled at once, and under a burst each worker call
    shares its blob reads, inserts and confirms among many events. The handler returns one outcome per
    event (None: handled; an exception: that event failed), or raises (every event of the batch
    failed). Each event is then acked, retried or dead-lettered on its own, as with `EventConsumer`.
    """

    def __init__(
        self,
        event_type: str,
        max_attempts: int | None = None,
        max_batch: int = 50,
        concurrency: int = 2,
        **kwargs,
    ):
        super().__init__(event_type, max_attempts, **kwargs)
        self.max_batch, self.concurrency = max_batch, concurrency
        # In messages, which carry up to WIRE_BATCH_MAX envelopes each: enough for the running batches
        # and the next ones when events come in batches, some 300 envelopes at most (150 of them being
        # handled), so that a backlog stays shared among the processes of a scaled-out stage.
        self.prefetch = max(concurrency + 1, max_batch * (concurrency + 1) * 2 // WIRE_BATCH_MAX)
        self._queued: list[tuple[_Delivery, Envelope]] = []
        self._running = 0
        self._dispatching = False

    def handle_message(self, body, message) -> None:
        delivery, envelopes = self._receive(message)
        if envelopes:
            self._queued.extend((delivery, envelope) for envelope in envelopes)
            self._schedule()

    def _schedule(self) -> None:
        # Dispatched once the consumer has taken every event already received (it yields only then).
        if not self._dispatching and self._running < self.concurrency:
            self._dispatching = True
            self.container.spawn_managed_thread(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatching = False
        while self._queued and self._running < self.concurrency:
            batch, self._queued = self._queued[: self.max_batch], self._queued[self.max_batch :]
            BATCH_SIZE.labels(self.spec.queue_name).observe(len(batch))
            self._running += 1
            try:
                self.container.spawn_worker(
                    self,
                    ([envelope for _, envelope in batch],),
                    {},
                    context_data={},
                    handle_result=functools.partial(self.handle_batch_result, batch),
                )
            except Exception:  # noqa: BLE001 - container being killed: give the messages back
                self._running -= 1
                for delivery, _ in batch:
                    self._settle(delivery, requeue=True)

    def handle_batch_result(self, batch, worker_ctx, result=None, exc_info=None):
        self._running -= 1
        try:
            if exc_info is None and result is not None and len(result) != len(batch):
                error = RuntimeError(f"handler returned {len(result)} outcomes for {len(batch)} events")
                exc_info = (RuntimeError, error, None)
            # The batch's acks leave the consumer's connection together.
            with corked(getattr(getattr(batch[0][0].message, "channel", None), "connection", None)):
                for index, (delivery, envelope) in enumerate(batch):
                    if exc_info is not None:
                        failure = exc_info
                    else:
                        outcome = result[index] if result is not None else None
                        failure = None if outcome is None else (type(outcome), outcome, outcome.__traceback__)
                    with trace_context(envelope.trace_id):
                        self._conclude(delivery, envelope, failure)
        finally:
            if self._queued:
                self._schedule()
        return result, exc_info


def each_event(envelopes, values, outcomes: list[Exception | None], work) -> list[tuple[int, Any]]:
    """For a batch handler: `work(envelope, value)` for each event whose value (e.g. its blob, from
    `BlobStore.get_many`) is not an exception, or `work(envelope)` for each event when `values` is None,
    under the event's trace id. An exception value, or one `work` raises, becomes that event's outcome;
    returns (index, result) for the others."""
    done = []
    pairs = zip(envelopes, values, strict=True) if values is not None else ((e, None) for e in envelopes)
    for index, (envelope, value) in enumerate(pairs):
        if isinstance(value, Exception):
            outcomes[index] = value
            continue
        try:
            with trace_context(envelope.trace_id):
                done.append((index, work(envelope) if values is None else work(envelope, value)))
        except Exception as exc:  # noqa: BLE001 - that event's outcome: retried
            outcomes[index] = exc
    return done


def batch_event_handler(
    event_type: str, max_attempts: int | None = None, max_batch: int = 50, concurrency: int = 2
):
    """Decorate a nameko service method as the batch handler of `event_type` (see BatchEventConsumer).

    The method receives a list of envelopes and returns a list of outcomes, one per envelope (None or
    the exception of that event), or None when all were handled.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def timed(self, envelopes: list[Envelope]):
            with HANDLER_SECONDS.labels(f"{self.name}.{event_type}").time():
                return fn(self, envelopes)

        return BatchEventConsumer.decorator(
            event_type, max_attempts=max_attempts, max_batch=max_batch, concurrency=concurrency
        )(timed)

    return decorate


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
