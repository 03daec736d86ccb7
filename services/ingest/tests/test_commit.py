"""Store, then publish, then 250: and on any failure, nothing half-delivered is left behind. Concurrent
commits share batches, and each message keeps its own outcome."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.bus import PublishError
from ingest.commit import CommitFailed, Committer


class Blobs:
    """A blob store: `fail` fails every store, `fail_ids` only those blobs', `delay` slows each batch."""

    def __init__(self, fail: bool = False, delay: float = 0.0, fail_ids: tuple[str, ...] = ()):
        self.stored: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self.batches: list[list[str]] = []
        self.fail = fail
        self.fail_ids = set(fail_ids)
        self.delay = delay

    def put_many(self, blobs):
        self.batches.append([blob_id for blob_id, _, _ in blobs])
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail:
            raise ConnectionError("database down")
        outcomes = []
        for blob_id, data, _metadata in blobs:
            if blob_id in self.fail_ids:
                outcomes.append(ConnectionError(f"write of {blob_id} failed"))
            elif blob_id in self.stored:
                outcomes.append(False)
            else:
                self.stored[blob_id] = data
                outcomes.append(True)
        return outcomes

    def delete(self, blob_id):
        self.stored.pop(blob_id, None)
        self.deleted.append(blob_id)


class Events:
    """A publisher: `fail` refuses every event, `refuse_ids` only those messages'."""

    source = "ingest"

    def __init__(
        self, blobs: Blobs, fail: bool = False, delay: float = 0.0, refuse_ids: tuple[str, ...] = ()
    ):
        self.blobs = blobs
        self.fail = fail
        self.refuse_ids = set(refuse_ids)
        self.delay = delay
        self.published: list[tuple[str, dict, str]] = []

    def publish_many(self, envelopes):
        outcomes = []
        for envelope in envelopes:
            # The order the brief wants: the blob exists before its event is published.
            assert envelope.payload["message_id"] in self.blobs.stored
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail:
            raise PublishError("broker did not confirm")
        for envelope in envelopes:
            if envelope.payload["message_id"] in self.refuse_ids:
                outcomes.append(PublishError("the broker refused event mail.received (basic.nack)", "nacked"))
            else:
                self.published.append((envelope.type, dict(envelope.payload), envelope.trace_id))
                outcomes.append(None)
        return outcomes


@pytest.fixture
def executor():
    with ThreadPoolExecutor(4) as pool:
        yield pool


def payload(message_id: str) -> dict:
    return {"message_id": message_id, "sender": "", "recipients": ["a@x.fr"], "size": 3, "origin": "mx"}


def trace(message_id: str) -> str:
    return f"{message_id:0>32}"[-32:].replace("m", "a")


def commit(committer: Committer, message_id: str = "m1") -> None:
    asyncio.run(committer.commit(message_id, b"raw", {}, payload(message_id), "f" * 32))


async def commit_many(committer: Committer, message_ids: list[str]) -> list[BaseException | None]:
    """Commit every message at the same time; the outcome of each (None: accepted)."""
    return await asyncio.gather(
        *(
            committer.commit(message_id, message_id.encode(), {}, payload(message_id), trace(message_id))
            for message_id in message_ids
        ),
        return_exceptions=True,
    )


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
    assert events.published == [("mail.received", payload("m1"), "f" * 32)]


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


def test_concurrent_commits_share_batches_and_each_is_stored_and_announced_once(executor):
    blobs = Blobs(delay=0.05)
    events = Events(blobs)
    ids = [f"m{n}" for n in range(30)]
    outcomes = asyncio.run(commit_many(Committer(blobs, events, executor, timeout=5), ids))
    assert outcomes == [None] * 30
    assert sorted(blob_id for batch in blobs.batches for blob_id in batch) == sorted(ids)
    assert len(blobs.batches) < 30  # the messages that arrived during a batch went in the next one
    assert max(len(batch) for batch in blobs.batches) > 1
    assert blobs.stored == {message_id: message_id.encode() for message_id in ids}
    assert sorted(published[1]["message_id"] for published in events.published) == sorted(ids)
    # Each event carries its own message's trace id.
    assert all(trace_id == trace(p["message_id"]) for _, p, trace_id in events.published)


def test_in_one_batch_each_message_keeps_its_own_outcome(executor):
    blobs = Blobs(delay=0.05, fail_ids=("m2",))
    events = Events(blobs, refuse_ids=("m3",))
    committer = Committer(blobs, events, executor, timeout=5)
    blobs.stored["m4"] = b"someone else's"  # a blob already there: not ours to announce or delete

    async def scenario():
        first = asyncio.ensure_future(committer.commit("m0", b"m0", {}, payload("m0"), trace("m0")))
        await asyncio.sleep(0.01)  # m0's batch is being stored: the others wait for the next one
        rest = await commit_many(committer, ["m1", "m2", "m3", "m4", "m5"])
        return [await first, *rest]

    outcomes = asyncio.run(scenario())
    assert outcomes[0] is None and outcomes[1] is None and outcomes[5] is None
    assert blobs.batches[1] == ["m1", "m2", "m3", "m4", "m5"]
    assert (outcomes[2].stage, outcomes[3].stage, outcomes[4].stage) == ("store", "publish", "store")
    assert outcomes[4].keep_blob
    wait_for(lambda: "m3" in blobs.deleted)
    assert sorted(p["message_id"] for _, p, _ in events.published) == ["m0", "m1", "m5"]
    assert sorted(blobs.stored) == ["m0", "m1", "m4", "m5"]
    assert "m4" not in blobs.deleted


def test_an_invalid_event_fails_its_own_message_only(executor):
    blobs = Blobs(delay=0.05)
    events = Events(blobs)
    committer = Committer(blobs, events, executor, timeout=5)

    async def scenario():
        first = asyncio.ensure_future(committer.commit("m0", b"m0", {}, payload("m0"), trace("m0")))
        await asyncio.sleep(0.01)
        broken = {**payload("m1"), "size": "three"}  # not an int: the envelope does not validate
        return await asyncio.gather(
            first,
            committer.commit("m1", b"m1", {}, broken, trace("m1")),
            committer.commit("m2", b"m2", {}, payload("m2"), trace("m2")),
            return_exceptions=True,
        )

    outcomes = asyncio.run(scenario())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], CommitFailed) and outcomes[1].stage == "publish"
    wait_for(lambda: blobs.deleted == ["m1"])
    assert sorted(blobs.stored) == ["m0", "m2"]


def test_a_stopped_executor_fails_the_commit_cleanly():
    blobs = Blobs()
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(CommitFailed) as failure:
        commit(Committer(blobs, Events(blobs), pool, timeout=5))
    assert failure.value.stage == "store"
    assert blobs.stored == {}
