"""The AMQP topology, declared in one place.

- `mail.events`: a durable topic exchange. Every event is published there with its type as routing key.
- One durable queue per consumer, named `<service>.<event type>` and bound to its event type. Two services
  interested in the same event each get their own copy; two processes of one service share its queue
  (that is how scan workers scale).
- Retries: `<queue>.retry.<N>s` queues hold a failed event for N seconds (queue TTL), then dead-letter it
  back to `<queue>` through the default exchange. One queue per delay keeps every retry queue FIFO, so a
  long back-off never blocks a short one.
- Dead letters: the durable direct exchange `mail.dead-letter` routes an event that failed
  EVENT_MAX_ATTEMPTS times (or could not be parsed) to `<queue>.dead`, with the failure reason in its
  headers, until an operator replays or discards it (`python -m common.deadletters`).
- Every queue is durable and every event persistent, so a broker restart loses nothing.
- `mail.live`: a topic exchange for transient browser notifications (routing key: mailbox address), the
  one place where messages are not persistent: a notification nobody is connected to receive is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kombu import Exchange, Queue

EVENTS_EXCHANGE = Exchange("mail.events", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("mail.dead-letter", type="direct", durable=True)
#: Transient notifications for connected browsers (routing key: the mailbox address). notify publishes,
#: each webmail process binds an exclusive queue; nothing is kept for a user who is not connected.
LIVE_EXCHANGE = Exchange("mail.live", type="topic", durable=True)


@dataclass(frozen=True)
class ConsumerSpec:
    """A consuming service's subscription to one event type."""

    service: str
    event_type: str

    @property
    def queue_name(self) -> str:
        """The consumer's durable work queue."""
        return f"{self.service}.{self.event_type}"

    @property
    def dead_letter_queue_name(self) -> str:
        """Where events that keep failing wait for an operator."""
        return f"{self.queue_name}.dead"

    def retry_queue_name(self, delay_seconds: int) -> str:
        """The queue that holds an event `delay_seconds` before handing it back."""
        return f"{self.queue_name}.retry.{delay_seconds}s"

    def queue(self) -> Queue:
        """The work queue, bound to the events exchange by event type."""
        return Queue(self.queue_name, EVENTS_EXCHANGE, routing_key=self.event_type, durable=True)

    def dead_letter_queue(self) -> Queue:
        """The dead-letter queue, bound by the work queue's name."""
        return Queue(
            self.dead_letter_queue_name, DEAD_LETTER_EXCHANGE, routing_key=self.queue_name, durable=True
        )

    def retry_queue(self, delay_seconds: int) -> Queue:
        """A retry queue whose messages return to the work queue after `delay_seconds`."""
        return Queue(
            self.retry_queue_name(delay_seconds),
            durable=True,
            queue_arguments={
                "x-message-ttl": delay_seconds * 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue_name,
            },
        )

    def all_queues(self, retry_delays: Iterable[int]) -> list[Queue]:
        """Every queue this consumer needs."""
        return [self.queue(), self.dead_letter_queue(), *(self.retry_queue(d) for d in retry_delays)]


#: Every consumer of the platform: which service handles which event.
CONSUMERS: list[ConsumerSpec] = [
    ConsumerSpec("scan", "mail.received"),
    ConsumerSpec("spam", "mail.scanned"),
    ConsumerSpec("spam", "mail.feedback"),
    ConsumerSpec("delivery", "mail.classified"),
    ConsumerSpec("delivery", "mail.infected"),
    ConsumerSpec("notify", "mail.delivered"),
    ConsumerSpec("notify", "mail.bounced"),
    ConsumerSpec("notify", "account.reset_requested"),
    ConsumerSpec("notify", "account.password_changed"),
]


def register_consumer(spec: ConsumerSpec) -> None:
    """Add a consumer at run time (tests and operators' probes); a no-op if it is already known."""
    if spec not in CONSUMERS:
        CONSUMERS.append(spec)


def consumer(service: str, event_type: str) -> ConsumerSpec:
    """The registered consumer spec for (service, event_type); raises KeyError if there is none."""
    for spec in CONSUMERS:
        if spec.service == service and spec.event_type == event_type:
            return spec
    raise KeyError(f"no consumer {service!r} of {event_type!r} in common.topology.CONSUMERS")


def declare(channel, specs: Iterable[ConsumerSpec] = CONSUMERS, retry_delays: Iterable[int] = ()) -> None:
    """Declare the exchanges and the queues of `specs` on a kombu channel (idempotent)."""
    delays = tuple(retry_delays)
    EVENTS_EXCHANGE(channel).declare()
    DEAD_LETTER_EXCHANGE(channel).declare()
    for spec in specs:
        for queue in spec.all_queues(delays):
            queue(channel).declare()
