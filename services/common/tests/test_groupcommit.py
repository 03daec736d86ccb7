"""Group commit: concurrent writes share one flush, each caller gets its own outcomes (common.groupcommit)."""

from __future__ import annotations

import threading
import time

import pytest

from common.groupcommit import GroupCommit


def test_a_lone_caller_is_flushed_at_once():
    flushes = []
    commit = GroupCommit(lambda items: flushes.append(list(items)) or [i * 10 for i in items])
    assert commit.submit([1, 2]) == [10, 20]
    assert commit.submit([3]) == [30]
    assert commit.submit([]) == []
    assert flushes == [[1, 2], [3]]


def test_callers_arriving_during_a_flush_share_the_next_one():
    started, release = threading.Event(), threading.Event()
    flushes = []

    def flush(items):
        flushes.append(list(items))
        if len(flushes) == 1:
            started.set()
            assert release.wait(5)
        return [f"ok-{i}" for i in items]

    commit = GroupCommit(flush)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", commit.submit(["a"])))
    first.start()
    assert started.wait(5)
    others = [
        threading.Thread(target=lambda n=n: results.setdefault(n, commit.submit([f"b{n}", f"c{n}"])))
        for n in range(5)
    ]
    for thread in others:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert (
        len(flushes) == 2
        and flushes[0] == ["a"]
        and sorted(flushes[1]) == sorted(item for n in range(5) for item in (f"b{n}", f"c{n}"))
    )
    assert results["first"] == ["ok-a"]
    for n in range(5):
        assert results[n] == [f"ok-b{n}", f"ok-c{n}"]  # each caller gets its own items' outcomes


def test_a_failed_flush_raises_in_every_caller_of_its_batch_and_the_next_one_works():
    started, release = threading.Event(), threading.Event()
    calls = []

    def flush(items):
        calls.append(list(items))
        if len(calls) == 1:
            started.set()
            assert release.wait(5)
        if len(calls) == 2:
            raise ConnectionError("database away")
        return list(items)

    commit = GroupCommit(flush)
    outcomes = []

    def call(item):
        try:
            outcomes.append(commit.submit([item]))
        except ConnectionError as exc:
            outcomes.append(exc)

    first = threading.Thread(target=call, args=("a",))
    first.start()
    assert started.wait(5)
    waiting = [threading.Thread(target=call, args=(item,)) for item in ("b", "c")]
    for thread in waiting:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in [first, *waiting]:
        thread.join(5)
    assert ["a"] in outcomes
    assert sum(isinstance(o, ConnectionError) for o in outcomes) == 2
    assert commit.submit(["d"]) == ["d"]


def test_batches_are_capped():
    started, release = threading.Event(), threading.Event()
    sizes = []

    def flush(items):
        sizes.append(len(items))
        if len(sizes) == 1:
            started.set()
            assert release.wait(5)
        return list(items)

    commit = GroupCommit(flush, max_batch=3)
    first = threading.Thread(target=commit.submit, args=([0],))
    first.start()
    assert started.wait(5)
    threads = [threading.Thread(target=commit.submit, args=([n],)) for n in range(1, 8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in [first, *threads]:
        thread.join(5)
    assert sizes[0] == 1 and sum(sizes) == 8 and max(sizes[1:]) <= 3


def test_a_flush_returning_the_wrong_number_of_outcomes_is_an_error():
    commit = GroupCommit(lambda items: [1])
    with pytest.raises(RuntimeError, match="2 items"):
        commit.submit(["a", "b"])


def test_many_threads_all_get_their_outcomes():
    commit = GroupCommit(lambda items: time.sleep(0.005) or [(i, "done") for i in items])
    results = {}
    threads = [
        threading.Thread(target=lambda n=n: results.setdefault(n, commit.submit([n]))) for n in range(50)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {n: [(n, "done")] for n in range(50)}
