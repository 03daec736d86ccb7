"""Live events for connected browsers: one AMQP consumer thread per webmail process, fanned out to
asyncio subscribers (the `/evenements` server-sent event streams).

notify publishes a transient `new_mail` notification on the topic exchange `mail.live` with the mailbox
address as routing key (docs/events.md). Each webmail process owns one exclusive, auto-delete, non-durable
queue, bound with one binding per mailbox that has at least one open stream in this process (bound when
its first stream opens, unbound when its last one closes): a process receives only its own users'
notifications, whatever the number of mailboxes in the academy. The binding key is the address itself;
an address made of a lone `*` or `#` word (never issued by the directory) would be a wildcard, so the
dispatcher also checks the notification's `mailbox` before handing it to a stream.

kombu is not thread-safe, so every channel operation (declare, bind, unbind, consume) happens in the
consumer thread; the event loop sends it bind/unbind commands through a queue and receives messages
through `loop.call_soon_threadsafe`. On any connection error (broker restart) the thread reconnects with
back-off, declares a new queue and re-binds every mailbox still subscribed. Notifications published while
it was disconnected are lost — the mailbox is the record; a browser that reconnects reloads its list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from typing import Any

from kombu import Connection, Consumer, Queue

from common.topology import LIVE_EXCHANGE

log = logging.getLogger("webmail.realtime")

#: Events a slow browser may have waiting before newer ones are dropped for it.
SUBSCRIBER_BACKLOG = 100
RECONNECT_DELAYS = (0.5, 1, 2, 5, 10)


class LiveHub:
    """Mailbox address -> the asyncio queues of its open event streams in this process."""

    def __init__(self, amqp_url: str):
        self.amqp_url = amqp_url
        self._subscribers: dict[str, set[asyncio.Queue]] = {}
        #: guards `_subscribers`, changed in the event loop and read by the consumer thread
        self._lock = threading.Lock()
        self._commands: queue.Queue[tuple[str, str, asyncio.Queue | None]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: set by the consumer thread once its queue is declared and bound (tests wait on it)
        self.connected = threading.Event()
        #: how many times the consumer has (re)connected
        self.connects = 0

    # --- event loop side ---------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="webmail-live", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5)

    def subscribe(self, address: str) -> asyncio.Queue:
        """A queue that receives the notifications of `address` until `unsubscribe`.

        Its first item is `{"type": "ready"}`, put once the broker binding for the address exists, so a
        stream can tell its browser that nothing from now on will be missed.
        """
        address = address.lower()
        stream: asyncio.Queue = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        with self._lock:
            self._subscribers.setdefault(address, set()).add(stream)
            self._commands.put(("bind", address, stream))
        return stream

    def unsubscribe(self, address: str, stream: asyncio.Queue) -> None:
        address = address.lower()
        with self._lock:
            streams = self._subscribers.get(address)
            if not streams:
                return
            streams.discard(stream)
            if not streams:
                del self._subscribers[address]
                self._commands.put(("unbind", address, None))

    def close_streams(self) -> None:
        """Tell every open stream to end (a None in its queue): the process is stopping."""
        with self._lock:
            streams = [s for group in self._subscribers.values() for s in group]
        for stream in streams:
            try:
                stream.put_nowait(None)
            except asyncio.QueueFull:
                pass

    def dispatch(self, notification: dict[str, Any]) -> None:
        """Hand a notification to the streams of its mailbox (runs in the event loop)."""
        mailbox = str(notification.get("mailbox", "")).lower()
        for stream in list(self._subscribers.get(mailbox, ())):
            try:
                stream.put_nowait(notification)
            except asyncio.QueueFull:
                log.warning("live event dropped for a slow browser")

    # --- consumer thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._consume()
                attempt = 0
            except Exception as exc:  # noqa: BLE001 - any broker error: reconnect
                self.connected.clear()
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning("live events: broker connection lost (%s); reconnecting in %ss", exc, delay)
                self._stop.wait(delay)

    def _consume(self) -> None:
        name = f"webmail.live.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        with Connection(self.amqp_url, connect_timeout=5, heartbeat=30) as connection:
            channel = connection.channel()
            live = Queue(name, exclusive=True, auto_delete=True, durable=False, channel=channel)
            live.declare()
            LIVE_EXCHANGE(channel).declare()
            # Commands queued before this (re)connection are superseded by the current subscribers.
            waiting = [stream for command, _, stream in self._drain_commands() if command == "bind"]
            bound: set[str] = set()
            with self._lock:
                wanted = list(self._subscribers)
            for address in wanted:
                live.bind_to(LIVE_EXCHANGE, routing_key=address)
                bound.add(address)
            for stream in waiting:
                self._ready(stream)
            consumer = Consumer(
                channel, queues=[live], callbacks=[self._on_message], accept=["json"], no_ack=True
            )
            consumer.consume()
            self.connects += 1
            self.connected.set()
            log.info("live events: consuming on %s", name)
            last_heartbeat = time.monotonic()
            while not self._stop.is_set():
                for command, address, stream in self._drain_commands():
                    if command == "bind":
                        if address not in bound:
                            live.bind_to(LIVE_EXCHANGE, routing_key=address)
                            bound.add(address)
                        self._ready(stream)
                    elif command == "unbind" and address in bound and not self._subscribed(address):
                        live.unbind_from(LIVE_EXCHANGE, routing_key=address)
                        bound.discard(address)
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
                if time.monotonic() - last_heartbeat > 5:
                    connection.heartbeat_check()
                    last_heartbeat = time.monotonic()
            self.connected.clear()

    def _ready(self, stream: asyncio.Queue | None) -> None:
        if stream is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_put, stream, {"type": "ready"})

    def _subscribed(self, address: str) -> bool:
        with self._lock:
            return address in self._subscribers

    def _drain_commands(self) -> list[tuple[str, str, asyncio.Queue | None]]:
        commands = []
        while True:
            try:
                commands.append(self._commands.get_nowait())
            except queue.Empty:
                return commands

    def _on_message(self, body: Any, message) -> None:
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except ValueError:
                return
        if not isinstance(body, dict) or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self.dispatch, body)


def _put(stream: asyncio.Queue, item: dict[str, Any]) -> None:
    try:
        stream.put_nowait(item)
    except asyncio.QueueFull:
        pass
