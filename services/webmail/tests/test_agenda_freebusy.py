"""Free/busy: merged busy intervals per person; transparent, cancelled and declined events do not count.
Runs against the real database."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from common.db import get_client
from webmail.agenda.errors import RangeTooLarge
from webmail.agenda.freebusy import busy_periods, free_slots, merge
from webmail.agenda.model import Attendee, EventInput, Scope
from webmail.agenda.store import AgendaStore

PARIS = ZoneInfo("Europe/Paris")
ALICE = "alice.martin@ac-montpellier.fr"
BRUNO = "bruno.petit@ac-montpellier.fr"
DAY = (dt.datetime(2026, 3, 30, 8), dt.datetime(2026, 3, 30, 18))


def at(hour, minute=0):
    return dt.datetime(2026, 3, 30, hour, minute, tzinfo=PARIS)


@pytest.fixture
def store(database):
    store = AgendaStore(database)
    store.ensure_indexes()
    return store


def test_merge_joins_overlapping_and_touching_intervals():
    assert merge([(at(11), at(12)), (at(9), at(10)), (at(9, 30), at(11)), (at(14), at(15))]) == [
        (at(9), at(12)),
        (at(14), at(15)),
    ]


@pytest.mark.integration
def test_busy_periods_merge_and_skip_free_events(store):
    store.create(ALICE, EventInput("Cours", dt.datetime(2026, 3, 30, 9), dt.datetime(2026, 3, 30, 10)))
    store.create(ALICE, EventInput("Cours", dt.datetime(2026, 3, 30, 9, 30), dt.datetime(2026, 3, 30, 11)))
    store.create(ALICE, EventInput("Rappel perso", dt.datetime(2026, 3, 30, 12), transparent=True))
    store.create(ALICE, EventInput("Annulé", dt.datetime(2026, 3, 30, 14), status="CANCELLED"))
    store.create(
        ALICE,
        EventInput(
            "Invitation refusée",
            dt.datetime(2026, 3, 30, 15),
            attendees=[Attendee(ALICE, partstat="DECLINED"), Attendee(BRUNO)],
        ),
    )
    weekly = store.create(BRUNO, EventInput("Permanence", dt.datetime(2026, 3, 16, 7), rrule="FREQ=WEEKLY"))
    store.update(BRUNO, weekly.id, {"status": "CANCELLED"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 23, 7))
    busy = busy_periods(store, [ALICE, BRUNO, ALICE], *DAY)
    # Bruno's 07:00-08:00 occurrence ends where the window starts: nothing of it inside.
    assert busy == {ALICE: [(at(9), at(11))], BRUNO: []}
    week = busy_periods(store, [BRUNO], dt.datetime(2026, 3, 16), dt.datetime(2026, 3, 31))[BRUNO]
    assert [start.day for start, _ in week] == [16, 30]  # the cancelled occurrence of the 23rd is free


@pytest.mark.integration
def test_free_slots_for_everyone(store):
    store.create(ALICE, EventInput("Cours", dt.datetime(2026, 3, 30, 9), dt.datetime(2026, 3, 30, 12)))
    store.create(BRUNO, EventInput("Réunion", dt.datetime(2026, 3, 30, 13), dt.datetime(2026, 3, 30, 17)))
    busy = busy_periods(store, [ALICE, BRUNO], *DAY)
    slots = free_slots(busy, at(8), at(18), dt.timedelta(hours=1))
    assert slots == [(at(8), at(9)), (at(12), at(13)), (at(17), at(18))]


def test_too_many_people_at_once_is_refused():
    unused = get_client()["unused"]  # pymongo connects lazily: the limit is checked before any query
    with pytest.raises(RangeTooLarge) as caught:
        busy_periods(AgendaStore(unused), [f"p{i}@ac-montpellier.fr" for i in range(51)], *DAY)
    assert "Trop de personnes" in str(caught.value)
