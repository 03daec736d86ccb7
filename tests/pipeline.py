"""Helpers for tests of the mail pipeline: run services as real processes, watch events, store raw mail."""

from __future__ import annotations

import collections
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from kombu import Connection, Queue

from common.config import get_settings
from common.db import BlobStore
from common.events import wire_items
from common.topology import CONSUMERS, EVENTS_EXCHANGE, declare
from tests.helpers import ServiceProcess, free_port

STAGE_PORT_SETTINGS = {
    "directory": "DIRECTORY_METRICS_PORT",
    "ingest": "INGEST_METRICS_PORT",
    "scan": "SCAN_METRICS_PORT",
    "spam": "SPAM_METRICS_PORT",
    "delivery": "DELIVERY_METRICS_PORT",
    "notify": "NOTIFY_METRICS_PORT",
    "webmail": "WEBMAIL_METRICS_PORT",
}


def purge_pipeline_queues() -> None:
    """Empty every consumer queue, so a test sees only its own events."""
    with Connection(get_settings().amqp_url) as conn:
        declare(conn.default_channel, CONSUMERS, get_settings().retry_delay_seconds())
        for spec in CONSUMERS:
            for queue in spec.all_queues(get_settings().retry_delay_seconds()):
                queue(conn.default_channel).purge()


@contextlib.contextmanager
def running_stages(
    names: list[str], database_name: str, tmp_path: Path, healthy: bool = True, **env: str
) -> Iterator[dict]:
    """Start the named nameko stages as processes against `database_name`; stop them afterwards.

    With `healthy=False` a stage only has to answer /healthz (a test may start it with a dependency down).
    """
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in names:
            port = free_port()
            processes[name] = ServiceProcess(
                ["-m", name],
                env={"DATABASE_NAME": database_name, STAGE_PORT_SETTINGS[name]: str(port), **env},
                health_port=port,
                log_path=tmp_path / f"{name}.log",
            )
        for process in processes.values():
            process.wait_healthy(accept=(200,) if healthy else (200, 503))
        yield processes
    finally:
        for process in processes.values():
            process.stop()


class QueueEvents:
    """The events of the messages waiting in a queue, taken without acks: one envelope at a time, a
    batch's envelopes in turn (`common.events.wire_items`)."""

    def __init__(self, channel, queue_name: str):
        self.channel, self.queue_name = channel, queue_name
        self._waiting: collections.deque = collections.deque()

    def take(self) -> list | None:
        """The envelopes (decoded JSON) of the next message waiting, None when none is."""
        message = self.channel.basic_get(self.queue_name, no_ack=True)
        return wire_items(message.body) if message else None

    def get(self) -> dict | None:
        """The next event, None when none is waiting."""
        if not self._waiting:
            self._waiting.extend(self.take() or ())
        return self._waiting.popleft() if self._waiting else None


class EventTap:
    """An exclusive queue of its own bound to an event type, to watch what the pipeline publishes.

    It is not a registered consumer: it disappears with its connection, and `purge_pipeline_queues`
    (which declares every registered consumer's queues) does not bring it back. It is not durable: the
    broker keeps what it holds in memory, not on disk (nothing outlives its connection anyway), so that
    watching a benchmark's events costs the broker little.
    """

    def __init__(self, event_type: str):
        self.connection = Connection(get_settings().amqp_url)
        self.queue = Queue(
            f"tap.{uuid.uuid4().hex[:8]}.{event_type}",
            EVENTS_EXCHANGE,
            routing_key=event_type,
            exclusive=True,
            auto_delete=True,
            durable=False,
        )(self.connection.default_channel)
        self.queue.declare()
        self.events = QueueEvents(self.connection.default_channel, self.queue.name)
        self.counted = 0

    def get(self) -> dict | None:
        """The next event published, None when none is waiting."""
        return self.events.get()

    def count(self) -> int:
        """How many events were published so far (the messages waiting are taken and counted, not kept;
        do not mix with `get`)."""
        while (envelopes := self.events.take()) is not None:
            self.counted += len(envelopes)
        return self.counted

    def close(self) -> None:
        self.connection.release()


def store_raw(database, raw: bytes) -> str:
    """Store a raw message as ingest would and return its id."""
    message_id = uuid.uuid4().hex
    BlobStore(database).put(message_id, raw)
    return message_id
