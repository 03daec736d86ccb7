"""Group commit: the writes that concurrent callers ask for at the same time, made by one command.

On FerretDB v1 (development and CI) a database is one SQLite file with a single writer and a synced
commit per write, so writes are served one after the other however many callers ask: every stage's
`insert_one` waited in the same line. Inserting many documents in one `insert_many` costs one commit.

`GroupCommit(flush).submit(items)` hands `items` to the next flush and blocks until it is done; it
returns one outcome per item (what `flush` returned for it) and raises the exception `flush` raised for
the whole batch. Flushes never overlap: while one runs, the callers that arrive wait, and the next flush
takes all of them (up to `max_batch` submissions). Nothing waits on a timer: a lone caller is flushed at
once, and batches grow only with the load, as in a database's own group commit. A caller returns only
once its own items are flushed, so the durability every caller relied on is unchanged.

Works with threads and with eventlet's green threads (nameko patches `threading`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Submission:
    __slots__ = ("done", "error", "items", "outcomes")

    def __init__(self, items: list):
        self.items = items
        self.outcomes: list | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[T, R]):
    """Batches concurrent `submit` calls into calls of `flush(items) -> [outcome per item]`."""

    def __init__(self, flush: Callable[[list[T]], Sequence[R]], max_batch: int = 64):
        self._flush = flush
        self._max_batch = max_batch
        self._condition = threading.Condition()
        self._pending: list[_Submission] = []
        self._flushing = False

    def submit(self, items: Sequence[T]) -> list[R]:
        """Flush `items` with whatever else is waiting; returns their outcomes in order."""
        submission = _Submission(list(items))
        if not submission.items:
            return []
        with self._condition:
            self._pending.append(submission)
        while True:
            with self._condition:
                while not submission.done and self._flushing:
                    self._condition.wait()
                if not submission.done:
                    # Lead the next flush: the oldest submissions, this one among them or ahead of it.
                    self._flushing = True
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
            if submission.done:
                if submission.error is not None:
                    raise submission.error
                return submission.outcomes
            try:
                self._run(batch)
            except BaseException:
                with self._condition:  # killed while leading: its own items, if still waiting, go too
                    if not submission.done and submission in self._pending:
                        self._pending.remove(submission)
                raise

    def _run(self, batch: list[_Submission]) -> None:
        items = [item for submission in batch for item in submission.items]
        error: BaseException | None = None
        outcomes: Sequence = ()
        try:
            outcomes = self._flush(items)
            if len(outcomes) != len(items):
                raise RuntimeError(f"flush returned {len(outcomes)} outcomes for {len(items)} items")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            error = exc
        with self._condition:
            start = 0
            for submission in batch:
                if error is None:
                    submission.outcomes = list(outcomes[start : start + len(submission.items)])
                else:
                    submission.error = error
                start += len(submission.items)
                submission.done = True
            self._flushing = False
            self._condition.notify_all()
        if error is not None and not isinstance(error, Exception):
            raise error  # a kill or an interrupt of the leading caller goes on to it too
