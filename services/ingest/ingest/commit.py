"""Storing a received message and publishing its `mail.received` event: the step before ingest says 250.

The order is fixed: the raw message is stored once (blob id = the new message id), then `mail.received`
is published and confirmed by the broker. Only when both succeeded may the client get 250. Any failure
raises `CommitFailed`, which the handler answers with 451 4.3.0 (temporary: the sender keeps the
message and tries again).

Commits are batched, as in a database's group commit: the messages whose DATA ended while a batch was
being committed are committed together by the next one, in one of the executor's threads. A batch is
one `put_many` (one insert for every ordinary message) and one `publish_many` (the events written
together, their confirms awaited together), and its outcomes go back to the event loop in one
hand-over. A lone message is committed at once; batches grow only with the load. Each message still
has its own outcome: a blob that could not be stored is not announced, and an event the broker refused
fails only its own message.

Nothing half-delivered stays visible: a blob whose transaction did not end in 250 is deleted, at once
when its fate is known, or as soon as the store or publish still running for it finishes (a timeout
does not stop a thread; a store that ends after the deadline is not published). The pipeline starts
only from a `mail.received` event, so a blob no event names is never delivered; if deleting it fails
too (database down), it stays as an orphan no event or mailbox references.

One ambiguity is inherent to confirms: a publish that timed out may still have reached the broker. The
blob is then deleted anyway, so that the sender's retry is the only copy delivered; scan must treat a
`mail.received` whose blob is missing as gone (dead-letter it), not as an error to retry forever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

from common.events import Envelope
from ingest import metrics

log = logging.getLogger(__name__)


class BlobWriter(Protocol):
    """The part of `common.db.BlobStore` ingest uses."""

    def put_many(
        self, blobs: Sequence[tuple[str, bytes, Mapping[str, Any] | None]]
    ) -> list[bool | Exception]: ...

    def delete(self, blob_id: str) -> None: ...


class EventSink(Protocol):
    """The part of `common.bus.EventPublisher` ingest uses (blocking)."""

    source: str

    def publish_many(self, envelopes: list[Envelope]) -> Sequence[Exception | None]: ...


class CommitFailed(RuntimeError):
    """The message could not be both stored and announced; `stage` is "store" or "publish"."""

    def __init__(self, stage: str, cause: BaseException | None, keep_blob: bool = False):
        super().__init__(f"{stage} failed: {type(cause).__name__ if cause else 'unknown'}: {cause}")
        self.stage = stage
        self.cause = cause
        self.keep_blob = keep_blob


class _Commit:
    """One message on its way through a batch, and what the event loop and the batch know of it.

    `lock` orders the two sides: the batch moves `stage` from "store" to "publish" only if the event
    loop has not given up (`abandoned`), and `when_finished` runs a callback at once if the batch is
    done with the message, or when it is.
    """

    __slots__ = (
        "abandoned",
        "data",
        "failure",
        "finished",
        "lock",
        "loop",
        "message_id",
        "metadata",
        "on_finished",
        "payload",
        "stage",
        "trace_id",
        "waiter",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        message_id: str,
        data: bytes,
        metadata: Mapping[str, Any],
        payload: Mapping[str, Any],
        trace_id: str,
    ):
        self.loop = loop
        self.waiter: asyncio.Future[None] = loop.create_future()
        self.message_id = message_id
        self.data = data
        self.metadata = metadata
        self.payload = payload
        self.trace_id = trace_id
        self.lock = threading.Lock()
        self.stage = "store"
        self.abandoned = False
        self.finished = False
        self.failure: CommitFailed | None = None
        self.on_finished: list[Callable[[], None]] = []

    def abandon(self) -> str:
        """Tell the batch not to publish if it has not started to; returns the stage it was at."""
        with self.lock:
            self.abandoned = True
            return self.stage

    def start_publishing(self) -> bool:
        """Stored: go on to publish, unless the event loop gave up meanwhile (False)."""
        with self.lock:
            if self.abandoned:  # stored after the deadline: the client got 451 already
                return False
            self.stage = "publish"
            return True

    def finish(self, failure: CommitFailed | None) -> None:
        """The batch is done with this message (its thread's side)."""
        with self.lock:
            self.failure = failure
            self.finished = True
            callbacks, self.on_finished = self.on_finished, []
        for callback in callbacks:
            callback()

    def when_finished(self, callback: Callable[[], None]) -> None:
        with self.lock:
            if not self.finished:
                self.on_finished.append(callback)
                return
        callback()


class Committer:
    """Stores then publishes, in batches, within `timeout` seconds per message, in `executor`'s threads."""

    def __init__(
        self,
        blobs: BlobWriter,
        events: EventSink,
        executor: Executor,
        timeout: float,
        max_batch: int = 64,
    ):
        self.blobs = blobs
        self.events = events
        self.executor = executor
        self.timeout = timeout
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Commit] = []
        self._running = False

    async def commit(
        self,
        message_id: str,
        data: bytes,
        metadata: Mapping[str, Any],
        payload: Mapping[str, Any],
        trace_id: str,
    ) -> None:
        """Store `data` under `message_id`, then publish `mail.received`; raises CommitFailed."""
        loop = asyncio.get_running_loop()
        item = _Commit(loop, message_id, data, metadata, payload, trace_id)
        self._enqueue(item)
        timer = loop.call_later(self.timeout, _wake, item.waiter)
        try:
            await item.waiter
        except asyncio.CancelledError:
            item.abandon()
            self._discard_when_finished(item)
            raise
        finally:
            timer.cancel()
        if not item.finished:  # the deadline passed: the batch goes on, and is not waited for
            stage = item.abandon()
            if not item.finished:  # (or it ended just now, and its outcome stands)
                self._discard_when_finished(item)
                raise CommitFailed(stage, TimeoutError(f"no commit within {self.timeout:g}s"))
        if item.failure is not None:
            if not item.failure.keep_blob:
                self._discard_when_finished(item)
            raise item.failure

    def _enqueue(self, item: _Commit) -> None:
        """Queue `item` for the next batch; start a batch runner in a thread if none is running."""
        with self._lock:
            self._waiting.append(item)
            if self._running:
                return
            self._running = True
        try:
            self.executor.submit(self._run)
        except RuntimeError as exc:  # the executor is shut down (ingest is stopping)
            with self._lock:
                self._running = False
                stranded, self._waiting = self._waiting, []
            for waiting in stranded:
                waiting.finish(CommitFailed("store", exc))
            self._settle(stranded)

    def _run(self) -> None:
        """Commit batches until none is waiting (in a thread of the executor)."""
        while True:
            with self._lock:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                if not batch:
                    self._running = False
                    return
            try:
                self._commit_batch(batch)
            except Exception as exc:  # a bug must not leave clients waiting until their deadline
                log.exception("a commit batch failed unexpectedly")
                for item in batch:
                    if not item.finished:
                        item.finish(CommitFailed(item.stage, exc))
            self._settle(batch)

    def _commit_batch(self, batch: list[_Commit]) -> None:
        metrics.COMMIT_BATCH.observe(len(batch))
        try:
            stored: Sequence[bool | Exception] = self.blobs.put_many(
                [(item.message_id, item.data, item.metadata) for item in batch]
            )
        except Exception as exc:  # noqa: BLE001 - the batch's shared write failed: each one failed
            stored = [exc] * len(batch)
        announce: list[_Commit] = []
        for item, outcome in zip(batch, stored, strict=True):
            if isinstance(outcome, Exception):
                item.finish(CommitFailed("store", outcome))
            elif not outcome:
                # A fresh uuid4 already stored: impossible unless something else wrote it. Not ours to
                # delete, and not ours to announce.
                item.finish(CommitFailed("store", FileExistsError(item.message_id), keep_blob=True))
            elif item.start_publishing():
                announce.append(item)
            else:
                item.finish(None)  # abandoned: its blob is deleted by the waiter's callback
        envelopes: list[Envelope] = []
        publishing: list[_Commit] = []
        for item in announce:
            try:
                envelopes.append(
                    Envelope.new("mail.received", item.payload, self.events.source, trace_id=item.trace_id)
                )
            except Exception as exc:  # noqa: BLE001 - an invalid event fails its own message only
                item.finish(CommitFailed("publish", exc))
            else:
                publishing.append(item)
        if not publishing:
            return
        try:
            published: Sequence[Exception | None] = self.events.publish_many(envelopes)
        except Exception as exc:  # noqa: BLE001 - the group publish failed as a whole
            published = [exc] * len(publishing)
        for item, failure in zip(publishing, published, strict=True):
            item.finish(None if failure is None else CommitFailed("publish", failure))

    def _settle(self, batch: list[_Commit]) -> None:
        """Wake the batch's waiters: one hand-over to each event loop for the whole batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for item in batch:
            by_loop.setdefault(item.loop, []).append(item.waiter)
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(_wake_all, waiters)
            except RuntimeError:  # the loop is closed (shutdown): nobody waits any more
                pass

    def _discard_when_finished(self, item: _Commit) -> None:
        """Delete the blob once the batch is done with `item` (stored or not, published or not).

        The callback runs in the batch's thread, or at once in the event loop's if the batch was done;
        the deletion itself goes to a worker thread, or runs here if the pool is gone (shutdown).
        """
        item.when_finished(lambda: self._delete_soon(item.message_id))

    def _delete_soon(self, message_id: str) -> None:
        try:
            self.executor.submit(self._delete, message_id)
        except RuntimeError:
            self._delete(message_id)

    def _delete(self, message_id: str) -> None:
        try:
            self.blobs.delete(message_id)
        except Exception:  # the database is likely what failed; the orphan is harmless
            log.warning(
                "could not delete the blob of a refused message; it stays orphaned (no event names it)",
                extra={"message_id": message_id},
                exc_info=True,
            )
        else:
            log.info("deleted the blob of a message that was not accepted", extra={"message_id": message_id})


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        _wake(waiter)
