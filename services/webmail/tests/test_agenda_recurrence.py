"""Recurrence expansion: bounded cost for unbounded rules, limits with French messages, time zones across
daylight-saving changes (Europe/Paris). Runs against the real database."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from webmail.agenda.errors import InvalidEvent, RangeTooLarge, TooManyOccurrences
from webmail.agenda.model import EventInput, Scope
from webmail.agenda.recurrence import MAX_OCCURRENCES
from webmail.agenda.store import AgendaStore

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
OWNER = "camille.martin@ac-montpellier.fr"


@pytest.fixture
def store(database):
    store = AgendaStore(database)
    store.ensure_indexes()
    return store


def test_weekly_meeting_stays_at_ten_local_across_both_dst_changes(store):
    # 2026: summer time starts Sunday 29 March, ends Sunday 25 October.
    store.create(OWNER, EventInput("Réunion d'équipe", dt.datetime(2026, 3, 16, 10), rrule="FREQ=WEEKLY"))
    spring = store.events_between(OWNER, dt.datetime(2026, 3, 16), dt.datetime(2026, 4, 7))
    autumn = store.events_between(OWNER, dt.datetime(2026, 10, 12), dt.datetime(2026, 11, 3))
    for occurrence in spring + autumn:
        assert (occurrence.start.hour, occurrence.start.minute) == (10, 0)
        assert occurrence.start.tzinfo.key == "Europe/Paris"
    assert [o.start.astimezone(dt.UTC).hour for o in spring] == [9, 9, 8, 8]
    assert [o.start.astimezone(dt.UTC).hour for o in autumn] == [8, 8, 9, 9]


def test_occurrences_are_returned_in_the_requested_time_zone(store):
    store.create(OWNER, EventInput("Visio", dt.datetime(2026, 3, 23, 10), rrule="FREQ=WEEKLY;COUNT=2"))
    # New York changes to summer time on 8 March, Paris on 29 March: the gap is 5 h then 6 h.
    occurrences = store.events_between(
        OWNER, dt.datetime(2026, 3, 20), dt.datetime(2026, 4, 5), tz="America/New_York"
    )
    assert [o.start.replace(tzinfo=None) for o in occurrences] == [
        dt.datetime(2026, 3, 23, 5),
        dt.datetime(2026, 3, 30, 4),
    ]
    assert occurrences[0].recurrence_id == occurrences[0].start


def test_edit_one_occurrence_after_the_dst_change(store):
    event = store.create(OWNER, EventInput("Réunion", dt.datetime(2026, 3, 16, 10), rrule="FREQ=WEEKLY"))
    override = store.update(
        OWNER, event.id, {"summary": "Réunion (été)"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 30, 10)
    )
    assert override.recurrence_id == dt.datetime(2026, 3, 30, 8, tzinfo=dt.UTC)
    # The same occurrence named by its UTC instant.
    again = store.update(
        OWNER, event.id, {"location": "Salle 2"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 30, 8, tzinfo=dt.UTC)
    )
    assert again.id == override.id


def test_unbounded_daily_rule_costs_only_its_window(store):
    store.create(OWNER, EventInput("Permanence", dt.datetime(2000, 1, 3, 8), rrule="FREQ=DAILY"))
    begin = time.monotonic()
    occurrences = store.events_between(OWNER, dt.datetime(2090, 6, 1), dt.datetime(2090, 6, 8))
    assert time.monotonic() - begin < 5
    assert len(occurrences) == 7
    assert all(o.start.hour == 8 for o in occurrences)


def test_too_long_a_window_is_refused_in_french(store):
    with pytest.raises(RangeTooLarge) as caught:
        store.events_between(OWNER, dt.datetime(2026, 1, 1), dt.datetime(2030, 1, 1))
    assert "trop longue" in str(caught.value)
    with pytest.raises(RangeTooLarge):
        store.events_between(OWNER, dt.datetime(2026, 2, 1), dt.datetime(2026, 1, 1))


def test_too_many_occurrences_in_a_window_is_refused_in_french(store):
    hours = ",".join(str(h) for h in range(24))
    store.create(
        OWNER,
        EventInput(
            "Relevé",
            dt.datetime(2026, 1, 1, 0),
            dt.datetime(2026, 1, 1, 0, 10),
            rrule=f"FREQ=DAILY;BYHOUR={hours}",
        ),
    )
    assert len(store.events_between(OWNER, dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 8))) == 7 * 24
    with pytest.raises(TooManyOccurrences) as caught:
        store.events_between(OWNER, dt.datetime(2026, 1, 1), dt.datetime(2026, 12, 1))
    assert f"{MAX_OCCURRENCES}" in str(caught.value) and "période plus courte" in str(caught.value)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("FREQ=SECONDLY", "chaque seconde"),
        ("FREQ=MINUTELY;INTERVAL=30", "chaque minute"),
        ("FREQ=HOURLY", "chaque heure"),
        (
            "FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23;BYMINUTE=0,30",
            "par jour",
        ),
        ("FREQ=DAILY;COUNT=1000000", "COUNT"),
        ("FREQ=DAILY;UNTIL=20200101T000000Z", "UNTIL"),
        ("FREQ=WEEKLY;BYDAY=XX", "invalide"),
    ],
)
def test_absurd_rules_are_refused(store, rule, expected):
    with pytest.raises(InvalidEvent) as caught:
        store.create(OWNER, EventInput("x", dt.datetime(2026, 3, 2, 10), rrule=rule))
    assert expected in str(caught.value)


def test_until_as_a_local_date_is_normalised_to_utc(store):
    event = store.create(
        OWNER, EventInput("Cours", dt.datetime(2026, 3, 2, 10), rrule="FREQ=WEEKLY;UNTIL=20260316")
    )
    assert "UNTIL=20260316T225959Z" in event.ical
    occurrences = store.events_between(OWNER, dt.datetime(2026, 3, 1), dt.datetime(2026, 4, 1))
    assert [o.start.day for o in occurrences] == [2, 9, 16]


def test_rdate_adds_an_occurrence(store):
    store.create(
        OWNER,
        EventInput(
            "Conseil de classe",
            dt.datetime(2026, 3, 2, 17),
            rrule="FREQ=MONTHLY;COUNT=2",
            rdates=[dt.datetime(2026, 6, 15, 17)],
        ),
    )
    occurrences = store.events_between(OWNER, dt.datetime(2026, 3, 1), dt.datetime(2026, 7, 1))
    assert [(o.start.month, o.start.day) for o in occurrences] == [(3, 2), (4, 2), (6, 15)]
