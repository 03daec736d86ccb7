"""Unread counts for the live notifications, one query for many deliveries to the same folder.

Each `mail.delivered` notification carries the folder's unread count, counted after the entry was stored.
Counting is a query over the mailbox entries; on FerretDB v1 (development and CI) it reads every entry of
every mailbox, so counting once per delivery made it the platform's most expensive operation under load.

`CoalescedCounts.get(key)` returns a count that started after the call: exactly what a fresh query would
give (it sees every entry stored before the caller asked). While one count of a key runs, the callers
that arrive wait for the next one, which starts when it ends and answers all of them together. So
notifications stay exact, and a burst of mail to one folder costs a count every query-time instead of
one per message. Thread-safe, and green-thread-safe under eventlet (which patches `threading`).

With `gather`, the caller that starts a count waits that many seconds first, so that the notifications
of entries stored at nearly the same moment (concurrent deliveries of one batch) share it too, even
when counts are so fast that they rarely overlap (on an index); the count still starts after each of
them asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class _Key:
    condition: threading.Condition = field(default_factory=threading.Condition)
    asked: int = 0  # tickets handed out
    answered: int = 0  # every ticket up to this one has its value
    value: int = 0
    running: bool = False
    waiting: int = 0


class CoalescedCounts:
    """Counts per key from `count(key)`, shared by the callers that ask while one is running."""

    def __init__(
        self,
        count: Callable[[Hashable], int],
        gather: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._count = count
        self._gather = gather
        self._sleep = sleep
        self._lock = threading.Lock()
        self._keys: dict[Hashable, _Key] = {}

    def get(self, key: Hashable) -> int:
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                state = self._keys[key] = _Key()
            state.waiting += 1
        try:
            return self._get(state, key)
        finally:
            with self._lock:
                state.waiting -= 1
                if state.waiting == 0 and not state.running:
                    del self._keys[key]

    def _get(self, state: _Key, key: Hashable) -> int:
        with state.condition:
            state.asked += 1
            ticket = state.asked
            while True:
                if state.answered >= ticket:
                    return state.value
                if not state.running:
                    state.running = True
                    break
                state.condition.wait()
        try:
            if self._gather > 0:
                self._sleep(self._gather)
            with state.condition:
                covers = state.asked  # every caller who asked before this count starts
            value = self._count(key)
        except BaseException:
            with state.condition:
                state.running = False
                state.condition.notify_all()  # one of the waiters starts a count of its own
            raise
        with state.condition:
            state.value, state.answered, state.running = value, covers, False
            state.condition.notify_all()
        return value
