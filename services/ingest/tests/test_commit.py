"""Store, then publish, then 250: and on any failure, nothing half-delivered is left behind."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.bus import PublishError
from ingest.commit import CommitFailed, Committer


class Blobs:
    def __init__(self, fail: bool = False, delay: float = 0.0):
        self.stored: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self.fail = fail
        self.delay = delay
        self.done = threading.Event()

    def put(self, blob_id, data, metadata=None):
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail:
            raise ConnectionError("database down")
        self.stored[blob_id] = data
        self.done.set()
        return True

    def delete(self, blob_id):
        self.stored.pop(blob_id, None)
        self.deleted.append(blob_id)


class Events:
    def __init__(self, blobs: Blobs, fail: bool = False, delay: float = 0.0):
        self.blobs = blobs
        self.fail = fail
        self.delay = delay
        self.published: list[tuple[str, dict, str]] = []

    def publish(self, event_type, payload, *, trace_id=None):
        # The order the brief wants: the blob exists before its event is published.
        assert payload["message_id"] in self.blobs.stored
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail:
            raise PublishError("broker did not confirm")
        self.published.append((event_type, dict(payload), trace_id))


@pytest.fixture
def executor():
    with ThreadPoolExecutor(4) as pool:
        yield pool


def commit(committer: Committer, message_id: str = "m1") -> None:
    asyncio.run(committer.commit(message_id, b"raw", {}, {"message_id": message_id}, "t" * 32))


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        deadline.wait(0.02)
    raise AssertionError("condition not met")


def test_success_stores_then_publishes(executor):
    blobs = Blobs()
    events = Events(blobs)
    commit(Committer(blobs, events, executor, timeout=5))
    assert blobs.stored == {"m1": b"raw"}
    assert events.published == [("mail.received", {"message_id": "m1"}, "t" * 32)]


def test_a_publish_failure_deletes_the_blob(executor):
    blobs = Blobs()
    with pytest.raises(CommitFailed) as failure:
        commit(Committer(blobs, Events(blobs, fail=True), executor, timeout=5))
    assert failure.value.stage == "publish"
    wait_for(lambda: blobs.deleted == ["m1"])
    assert blobs.stored == {}


def test_a_store_failure_publishes_nothing(executor):
    blobs = Blobs(fail=True)
    events = Events(blobs)
    with pytest.raises(CommitFailed) as failure:
        commit(Committer(blobs, events, executor, timeout=5))
    assert failure.value.stage == "store"
    assert events.published == []


def test_a_store_that_times_out_is_deleted_when_it_finally_completes(executor):
    blobs = Blobs(delay=0.5)
    events = Events(blobs)
    with pytest.raises(CommitFailed):
        commit(Committer(blobs, events, executor, timeout=0.1))
    wait_for(lambda: blobs.deleted == ["m1"])
    assert blobs.stored == {}
    assert events.published == []


def test_a_publish_that_times_out_deletes_the_blob_after_it_ends(executor):
    blobs = Blobs()
    events = Events(blobs, delay=0.5)
    with pytest.raises(CommitFailed) as failure:
        commit(Committer(blobs, events, executor, timeout=0.2))
    assert failure.value.stage == "publish"
    # Deleted only once the publish thread returned, never while it could still be using the blob.
    wait_for(lambda: blobs.deleted == ["m1"])
    assert len(events.published) == 1
