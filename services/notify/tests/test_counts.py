"""Unread counts shared by the notifications that ask while one count runs (notify.counts)."""

from __future__ import annotations

import threading
import time

import pytest

from notify.counts import CoalescedCounts


def test_each_call_counts_afresh_when_nothing_runs():
    calls = []
    counts = CoalescedCounts(lambda key: calls.append(key) or len(calls))
    assert [counts.get("a"), counts.get("a"), counts.get("b")] == [1, 2, 3]
    assert calls == ["a", "a", "b"]
    assert counts._keys == {}


def test_callers_arriving_during_a_count_share_the_next_one():
    started, release = threading.Event(), threading.Event()
    stored = {"n": 1}  # entries stored so far
    calls = []

    def count(key):
        seen = stored["n"]  # what a query starting now sees
        calls.append(seen)
        if len(calls) == 1:
            started.set()
            assert release.wait(5)
        return seen

    counts = CoalescedCounts(count)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", counts.get("k")))
    first.start()
    assert started.wait(5)
    # While the first count runs, four more entries are stored, each followed by its notification.
    late = []
    for n in range(4):
        stored["n"] += 1
        thread = threading.Thread(target=lambda n=n: results.setdefault(n, counts.get("k")))
        thread.start()
        late.append(thread)
    time.sleep(0.2)  # let them queue behind the running count
    release.set()
    for thread in [first, *late]:
        thread.join(5)
    # The first caller got the count it started; the others one count started after they asked,
    # which sees every entry: two queries for five notifications, all exact.
    assert calls == [1, 5]
    assert results == {"first": 1, 0: 5, 1: 5, 2: 5, 3: 5}
    assert counts._keys == {}


def test_a_failing_count_fails_its_caller_and_a_waiter_counts_again():
    started, release = threading.Event(), threading.Event()
    calls = []

    def count(key):
        calls.append(key)
        if len(calls) == 1:
            started.set()
            assert release.wait(5)
            raise ConnectionError("database away")
        return 7

    counts = CoalescedCounts(count)
    errors, results = [], []

    def first():
        try:
            counts.get("k")
        except ConnectionError as exc:
            errors.append(exc)

    a = threading.Thread(target=first)
    a.start()
    assert started.wait(5)
    b = threading.Thread(target=lambda: results.append(counts.get("k")))
    b.start()
    time.sleep(0.1)
    release.set()
    a.join(5)
    b.join(5)
    assert len(errors) == 1 and results == [7] and len(calls) == 2


def test_different_keys_do_not_wait_for_each_other():
    release = threading.Event()

    def count(key):
        if key == "slow":
            assert release.wait(5)
        return 1

    counts = CoalescedCounts(count)
    slow = threading.Thread(target=counts.get, args=("slow",))
    slow.start()
    try:
        assert counts.get("fast") == 1
    finally:
        release.set()
        slow.join(5)


@pytest.mark.parametrize("callers", [20])
def test_many_concurrent_callers_all_get_a_value(callers):
    counts = CoalescedCounts(lambda key: time.sleep(0.01) or 3)
    results = []
    threads = [threading.Thread(target=lambda: results.append(counts.get("k"))) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert results == [3] * callers
    assert counts._keys == {}


def test_with_gather_the_first_caller_waits_so_that_near_simultaneous_ones_share_its_count():
    calls = []
    arrived = threading.Event()

    def sleep(seconds):
        assert seconds == 0.5
        assert arrived.wait(5)  # a second notification asks while the first waits to count

    counts = CoalescedCounts(lambda key: calls.append(key) or 7, gather=0.5, sleep=sleep)
    results = []
    first = threading.Thread(target=lambda: results.append(counts.get("k")))
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=lambda: results.append(counts.get("k")))
    second.start()
    time.sleep(0.1)
    arrived.set()
    first.join(5)
    second.join(5)
    assert results == [7, 7]
    assert calls == ["k"]
