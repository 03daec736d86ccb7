"""Storing a received message and publishing its `mail.received` event: the step before ingest says 250.

The order is fixed: the raw message is stored once (blob id = the new message id), then `mail.received`
is published and confirmed by the broker. Only when both succeeded may the client get 250. Any failure
raises `CommitFailed`, which the handler answers with 451 4.3.0 (temporary: the sender keeps the
message and tries again).

Both steps run in one of the executor's threads, one after the other (one hand-over between the event
loop and the threads per message). Nothing half-delivered stays visible: a blob whose transaction did not
end in 250 is deleted, at once when its fate is known, or as soon as the store or publish still running
in its thread finishes (a timeout does not stop a thread; a store that ends after the deadline is not
published). The pipeline starts only from a `mail.received` event, so a blob no
event names is never delivered; if deleting it fails too (database down), it stays as an orphan no
event or mailbox references.

One ambiguity is inherent to confirms: a publish that timed out may still have reached the broker. The
blob is then deleted anyway, so that the sender's retry is the only copy delivered; scan must treat a
`mail.received` whose blob is missing as gone (dead-letter it), not as an error to retry forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any, Protocol

log = logging.getLogger(__name__)


class BlobWriter(Protocol):
    """The part of `common.db.BlobStore` ingest uses."""

    def put(self, blob_id: str, data: bytes, metadata: Mapping[str, Any] | None = None) -> bool: ...

    def delete(self, blob_id: str) -> None: ...


class EventSink(Protocol):
    """The part of `common.bus.EventPublisher` ingest uses (blocking, raises PublishError)."""

    def publish(self, event_type: str, payload: Mapping[str, Any], *, trace_id: str | None = None) -> Any: ...


class CommitFailed(RuntimeError):
    """The message could not be both stored and announced; `stage` is "store" or "publish"."""

    def __init__(self, stage: str, cause: BaseException | None, keep_blob: bool = False):
        super().__init__(f"{stage} failed: {type(cause).__name__ if cause else 'unknown'}: {cause}")
        self.stage = stage
        self.cause = cause
        self.keep_blob = keep_blob


class _Attempt:
    """Where one commit's thread is, and whether the event loop gave up waiting for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stage = "store"
        self.abandoned = False

    def abandon(self) -> str:
        """Tell the thread not to publish if it has not started to; returns the stage it was at."""
        with self.lock:
            self.abandoned = True
            return self.stage


async def _finished(pending: concurrent.futures.Future[Any], timeout: float) -> None:
    """Wait up to `timeout` seconds for `pending` and return or raise its outcome (TimeoutError after the
    deadline), never cancelling it: `asyncio.wait_for(asyncio.shield(asyncio.wrap_future(...)))` in one
    event-loop future and one timer instead of three futures, a timer and their callbacks."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    def wake_from_thread(_: concurrent.futures.Future[Any]) -> None:
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:  # the loop is closed (shutdown): nobody waits any more
            pass

    timer = loop.call_later(timeout, wake)
    pending.add_done_callback(wake_from_thread)
    try:
        await waiter
    finally:
        timer.cancel()
    if not pending.done():
        raise TimeoutError
    if pending.cancelled():
        raise asyncio.CancelledError
    pending.result()


class Committer:
    """Stores then publishes, within `timeout` seconds in all, in one of `executor`'s threads."""

    def __init__(self, blobs: BlobWriter, events: EventSink, executor: Executor, timeout: float):
        self.blobs = blobs
        self.events = events
        self.executor = executor
        self.timeout = timeout

    async def commit(
        self,
        message_id: str,
        data: bytes,
        metadata: Mapping[str, Any],
        payload: Mapping[str, Any],
        trace_id: str,
    ) -> None:
        """Store `data` under `message_id`, then publish `mail.received`; raises CommitFailed."""
        attempt = _Attempt()
        pending = self.executor.submit(
            self._store_then_publish, attempt, message_id, data, metadata, payload, trace_id
        )
        try:
            await _finished(pending, self.timeout)
        except asyncio.CancelledError:
            attempt.abandon()
            self._discard_when_done(pending, message_id)
            raise
        except CommitFailed as exc:
            if not exc.keep_blob:
                self._discard_when_done(pending, message_id)
            raise
        except Exception as exc:  # the deadline passed: the thread goes on, and is not waited for
            stage = attempt.abandon()
            self._discard_when_done(pending, message_id)
            raise CommitFailed(stage, exc) from exc

    def _store_then_publish(
        self,
        attempt: _Attempt,
        message_id: str,
        data: bytes,
        metadata: Mapping[str, Any],
        payload: Mapping[str, Any],
        trace_id: str,
    ) -> None:
        try:
            created = self.blobs.put(message_id, data, metadata)
        except Exception as exc:
            raise CommitFailed("store", exc) from exc
        if not created:
            # A fresh uuid4 already stored: impossible unless something else wrote it. Not ours to
            # delete, and not ours to announce.
            raise CommitFailed("store", FileExistsError(message_id), keep_blob=True)
        with attempt.lock:
            if attempt.abandoned:  # stored after the deadline: the client got 451 already
                return
            attempt.stage = "publish"
        try:
            self._publish(payload, trace_id)
        except Exception as exc:
            raise CommitFailed("publish", exc) from exc

    def _publish(self, payload: Mapping[str, Any], trace_id: str) -> None:
        self.events.publish("mail.received", payload, trace_id=trace_id)

    def _discard_when_done(self, pending: concurrent.futures.Future[Any], message_id: str) -> None:
        """Delete the blob once `pending` (a store or a publish) has finished, whatever its outcome.

        The callback hangs on the thread's own future, not on the event loop, so it runs even if the
        loop has stopped by then (a shutdown in the middle of a commit).
        """
        pending.add_done_callback(lambda _: self._delete_soon(message_id))

    def _delete_soon(self, message_id: str) -> None:
        # A future that is already done runs its callback at once, in the event loop's thread: hand the
        # (blocking) deletion to a worker instead, or do it here if the pool is gone (shutdown).
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
