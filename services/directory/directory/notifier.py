"""How the directory tells the rest of the platform that a mail must be sent.

The reset mail and the "your password was changed" notice are written and sent by the notify service;
the directory only publishes events on the bus (`account.reset_requested`, `account.password_changed`,
see docs/events.md). `Notifier` is the seam: `EventNotifier` publishes through `common.bus`, and
`RecordingNotifier` keeps the events in memory for tests and for running without a broker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

log = logging.getLogger(__name__)

RESET_REQUESTED = "account.reset_requested"
PASSWORD_CHANGED = "account.password_changed"  # noqa: S105 - an event type


class NotificationError(Exception):
    """The event could not be handed to the bus."""


class Notifier(Protocol):
    """Publishes the directory's events."""

    def publish(self, event_type: str, payload: dict[str, Any], *, trace_id: str | None = None) -> None: ...


class EventNotifier:
    """Publishes on RabbitMQ through `common.bus.EventPublisher` (created on first use)."""

    def __init__(self) -> None:
        self._publisher: Any = None
        self._lock = threading.Lock()

    def publish(self, event_type: str, payload: dict[str, Any], *, trace_id: str | None = None) -> None:
        from common import bus
        from common.events import InvalidEvent

        with self._lock:
            if self._publisher is None:
                self._publisher = bus.EventPublisher(source="directory")
        try:
            self._publisher.publish(event_type, payload, trace_id=trace_id)
        except (bus.PublishError, InvalidEvent) as exc:
            raise NotificationError(str(exc)) from exc


class RecordingNotifier:
    """Keeps published events in `events` ([(event_type, payload)]); for tests and broker-less runs."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def publish(self, event_type: str, payload: dict[str, Any], *, trace_id: str | None = None) -> None:
        if self.fail:
            raise NotificationError("recording notifier set to fail")
        with self._lock:
            self.events.append((event_type, dict(payload)))

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The payloads of the events of `event_type`, oldest first."""
        with self._lock:
            return [p for t, p in self.events if t == event_type]


def default_notifier() -> Notifier:
    """The bus publisher when `common.bus` is available, else a recording notifier (with a warning)."""
    try:
        import common.bus  # noqa: F401
    except ImportError:
        log.warning("common.bus is not available: events are only recorded in memory")
        return RecordingNotifier()
    return EventNotifier()
