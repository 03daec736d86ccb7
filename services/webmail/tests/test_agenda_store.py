"""Calendar storage: create, edit (series, one occurrence, this and following), move, delete, owner scoping,
reminders. Runs against the real database (the root conftest's `database` fixture)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from webmail.agenda.errors import EditConflict, EventNotFound, InvalidEvent, OccurrenceNotFound
from webmail.agenda.model import FAR_FUTURE, Attendee, EventInput, Scope
from webmail.agenda.store import COLLECTION, AgendaStore, parse_component

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
ALICE = "alice.martin@ac-montpellier.fr"
BRUNO = "bruno.petit@ac-montpellier.fr"


@pytest.fixture
def store(database):
    store = AgendaStore(database)
    store.ensure_indexes()
    return store


def weekly(store, owner=ALICE, **extra):
    data = EventInput(
        "Conseil pédagogique", dt.datetime(2026, 3, 2, 10), rrule="FREQ=WEEKLY;BYDAY=MO", **extra
    )
    return store.create(owner, data)


def starts(occurrences):
    return [(o.start.replace(tzinfo=None), o.summary) for o in occurrences]


def test_create_single_event_stores_component_and_indexed_fields(store, database):
    event = store.create(
        ALICE,
        EventInput(
            "Réunion de rentrée",
            dt.datetime(2026, 9, 1, 9, 30),
            dt.datetime(2026, 9, 1, 11),
            location="Salle B12",
            reminders=[15, 60],
        ),
    )
    doc = database[COLLECTION].find_one({"_id": event.id})
    assert doc["owner"] == ALICE and doc["kind"] == "master" and doc["series_id"] == event.id
    assert doc["start"] == dt.datetime(2026, 9, 1, 7, 30, tzinfo=dt.UTC)
    assert doc["end"] == doc["until"] == dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
    assert doc["tzid"] == "Europe/Paris" and doc["reminders"] == [15, 60] and doc["has_alarms"]
    component = parse_component(doc["ical"])
    assert component["DTSTART"].params["TZID"] == "Europe/Paris"
    assert str(component["LOCATION"]) == "Salle B12"
    assert len(list(component.walk("VALARM"))) == 2
    assert len(event.id) == 32


def test_unbounded_series_has_far_future_until_and_bounded_one_its_last_end(store):
    assert weekly(store).until == FAR_FUTURE
    bounded = store.create(ALICE, EventInput("Cours", dt.datetime(2026, 3, 2, 8), rrule="FREQ=DAILY;COUNT=3"))
    assert bounded.until == dt.datetime(2026, 3, 4, 8, tzinfo=dt.UTC)  # 09:00 Paris + 1 h, in UTC


def test_another_owner_cannot_read_update_move_or_delete_by_id(store):
    event = weekly(store)
    with pytest.raises(EventNotFound) as caught:
        store.get(BRUNO, event.id)
    assert "introuvable" in str(caught.value)
    with pytest.raises(EventNotFound):
        store.update(BRUNO, event.id, {"summary": "Piraté"})
    with pytest.raises(EventNotFound):
        store.move(BRUNO, event.id, dt.datetime(2026, 3, 3, 10))
    with pytest.raises(EventNotFound):
        store.update(BRUNO, event.id, {"summary": "x"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 9, 10))
    with pytest.raises(EventNotFound):
        store.delete(BRUNO, event.id)
    with pytest.raises(EventNotFound):
        store.delete(BRUNO, event.id, Scope.OCCURRENCE, dt.datetime(2026, 3, 9, 10))
    with pytest.raises(EventNotFound):
        store.series(BRUNO, event.id)
    assert store.events_between(BRUNO, dt.datetime(2026, 3, 1), dt.datetime(2026, 4, 1)) == []
    unchanged = store.get(ALICE, event.id)
    assert unchanged.summary == "Conseil pédagogique" and unchanged.sequence == 0
    assert len(store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 4, 1))) == 5


def test_unknown_or_malformed_ids_are_not_found(store):
    for bad in ("", "nope", {"$ne": None}, None):
        with pytest.raises(EventNotFound):
            store.get(ALICE, bad)


def test_update_whole_series_keeps_uid_and_bumps_sequence(store):
    event = weekly(store)
    updated = store.update(ALICE, event.id, {"summary": "Conseil", "location": "CDI"})
    assert updated.uid == event.uid and updated.sequence == 1
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 20))
    assert {o.summary for o in occurrences} == {"Conseil"}
    assert {o.location for o in occurrences} == {"CDI"}


def test_edit_one_occurrence_creates_an_override(store):
    event = weekly(store)
    override = store.update(
        ALICE,
        event.id,
        {"summary": "Conseil exceptionnel", "start": dt.datetime(2026, 3, 10, 14)},
        Scope.OCCURRENCE,
        dt.datetime(2026, 3, 9, 10),
    )
    assert override.kind == "override" and override.uid == event.uid and override.series_id == event.id
    assert override.sequence == 1
    assert override.recurrence_id == dt.datetime(2026, 3, 9, 9, tzinfo=dt.UTC)
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 20))
    assert starts(occurrences) == [
        (dt.datetime(2026, 3, 2, 10), "Conseil pédagogique"),
        (dt.datetime(2026, 3, 10, 14), "Conseil exceptionnel"),
        (dt.datetime(2026, 3, 16, 10), "Conseil pédagogique"),
    ]
    moved = occurrences[1]
    assert moved.modified and moved.event_id == override.id and moved.series_id == event.id
    assert moved.recurrence_id == dt.datetime(2026, 3, 9, 10, tzinfo=PARIS)
    assert moved.end == dt.datetime(2026, 3, 10, 15, tzinfo=PARIS)  # length kept
    # Editing it again goes to the same override.
    again = store.update(ALICE, override.id, {"location": "Salle 3"}, Scope.OCCURRENCE)
    assert again.id == override.id and again.sequence == 2
    # A window containing only the original slot does not show the master's occurrence there.
    assert store.events_between(ALICE, dt.datetime(2026, 3, 9), dt.datetime(2026, 3, 10)) == []


def test_occurrence_that_does_not_exist_is_refused(store):
    event = weekly(store)
    with pytest.raises(OccurrenceNotFound) as caught:
        store.update(ALICE, event.id, {"summary": "x"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 10, 10))
    assert "occurrence" in str(caught.value)


def test_delete_one_occurrence_adds_an_exdate(store):
    event = weekly(store)
    store.update(ALICE, event.id, {"summary": "Modifié"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 16, 10))
    store.delete(ALICE, event.id, Scope.OCCURRENCE, dt.datetime(2026, 3, 9, 10))
    store.delete(ALICE, event.id, Scope.OCCURRENCE, dt.datetime(2026, 3, 16, 10))  # the override goes too
    master = store.get(ALICE, event.id)
    assert master.sequence == 2 and master.uid == event.uid
    component = parse_component(master.ical)
    assert sorted(component.exdates) == [
        dt.datetime(2026, 3, 9, 10, tzinfo=PARIS),
        dt.datetime(2026, 3, 16, 10, tzinfo=PARIS),
    ]
    assert len(store.series(ALICE, event.id)) == 1
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 31))
    assert [o.start.day for o in occurrences] == [2, 23, 30]


def test_this_and_following_splits_the_series(store):
    event = weekly(store)
    store.update(ALICE, event.id, {"summary": "Déplacé"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 30, 10))
    tail = store.update(
        ALICE,
        event.id,
        {"summary": "Nouveau conseil", "start": dt.datetime(2026, 3, 23, 11)},
        Scope.FOLLOWING,
        dt.datetime(2026, 3, 23, 10),
    )
    assert tail.uid != event.uid and tail.id != event.id
    head = store.get(ALICE, event.id)
    assert head.uid == event.uid and head.sequence == 1
    assert "UNTIL=20260323T085959Z" in head.ical
    assert f"RELATED-TO;RELTYPE=SIBLING:{event.uid}" in tail.ical
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 4, 10))
    assert starts(occurrences) == [
        (dt.datetime(2026, 3, 2, 10), "Conseil pédagogique"),
        (dt.datetime(2026, 3, 9, 10), "Conseil pédagogique"),
        (dt.datetime(2026, 3, 16, 10), "Conseil pédagogique"),
        (dt.datetime(2026, 3, 23, 11), "Nouveau conseil"),
        (dt.datetime(2026, 3, 30, 11), "Déplacé"),  # the override followed its series
        (dt.datetime(2026, 4, 6, 11), "Nouveau conseil"),
    ]
    assert all(o.uid == tail.uid for o in occurrences[3:])


def test_this_and_following_with_count_keeps_the_number_of_occurrences(store):
    event = store.create(ALICE, EventInput("Stage", dt.datetime(2026, 5, 4, 9), rrule="FREQ=DAILY;COUNT=5"))
    store.update(ALICE, event.id, {"location": "Amphi"}, Scope.FOLLOWING, dt.datetime(2026, 5, 6, 9))
    occurrences = store.events_between(ALICE, dt.datetime(2026, 5, 1), dt.datetime(2026, 5, 20))
    assert [(o.start.day, o.location) for o in occurrences] == [
        (4, ""),
        (5, ""),
        (6, "Amphi"),
        (7, "Amphi"),
        (8, "Amphi"),
    ]


def test_delete_following_and_whole_series(store):
    event = weekly(store)
    store.update(ALICE, event.id, {"summary": "x"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 30, 10))
    store.delete(ALICE, event.id, Scope.FOLLOWING, dt.datetime(2026, 3, 16, 10))
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 5, 1))
    assert [o.start.day for o in occurrences] == [2, 9]
    assert len(store.series(ALICE, event.id)) == 1
    store.delete(ALICE, event.id)
    with pytest.raises(EventNotFound):
        store.get(ALICE, event.id)
    assert store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 5, 1)) == []


def test_move_series_keeps_length_and_moves_its_exceptions(store):
    event = weekly(store)
    store.delete(ALICE, event.id, Scope.OCCURRENCE, dt.datetime(2026, 3, 9, 10))
    store.update(ALICE, event.id, {"summary": "Spécial"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 16, 10))
    moved = store.move(ALICE, event.id, dt.datetime(2026, 3, 2, 14))
    assert moved.sequence == 2
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 25))
    assert [(o.start.replace(tzinfo=None), o.end.hour, o.summary) for o in occurrences] == [
        (dt.datetime(2026, 3, 2, 14), 15, "Conseil pédagogique"),
        (dt.datetime(2026, 3, 16, 14), 15, "Spécial"),
        (dt.datetime(2026, 3, 23, 14), 15, "Conseil pédagogique"),
    ]


def test_moving_a_series_to_another_day_moves_its_weekdays(store):
    event = weekly(store)
    store.move(ALICE, event.id, dt.datetime(2026, 3, 4, 9))
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 19))
    assert [o.start.replace(tzinfo=None) for o in occurrences] == [
        dt.datetime(2026, 3, 4, 9),
        dt.datetime(2026, 3, 11, 9),
        dt.datetime(2026, 3, 18, 9),
    ]
    assert "BYDAY=WE" in store.get(ALICE, event.id).ical
    # An earlier hour the same day is not a day earlier.
    store.move(ALICE, event.id, dt.datetime(2026, 3, 4, 8))
    assert "BYDAY=WE" in store.get(ALICE, event.id).ical


def test_series_change_propagates_to_overrides_that_kept_the_old_value(store):
    event = weekly(store)
    store.update(ALICE, event.id, {"location": "Salle 1"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 9, 10))
    store.update(ALICE, event.id, {"summary": "Conseil"})
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 12))
    assert [(o.summary, o.location) for o in occurrences] == [("Conseil", ""), ("Conseil", "Salle 1")]


def test_changing_the_rule_discards_exceptions(store):
    event = weekly(store)
    store.delete(ALICE, event.id, Scope.OCCURRENCE, dt.datetime(2026, 3, 9, 10))
    store.update(ALICE, event.id, {"rrule": "FREQ=WEEKLY;BYDAY=TU"})
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 18))
    assert [o.start.day for o in occurrences] == [2, 3, 10, 17]  # DTSTART itself is always an occurrence


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (EventInput("x", dt.datetime(2026, 3, 2, 10), dt.datetime(2026, 3, 2, 9)), "précède"),
        (EventInput("x", dt.datetime(2026, 3, 2, 10), tz="Mars/Olympus"), "Fuseau horaire inconnu"),
        (EventInput("x", dt.datetime(2026, 3, 2, 10), rrule="FREQ=FOO"), "Règle de répétition invalide"),
        (EventInput("x", dt.datetime(2026, 3, 2, 10), rrule="FREQ=MINUTELY"), "trop fréquente"),
        (EventInput("x", dt.datetime(2026, 3, 2, 10), reminders=[60 * 24 * 60]), "rappel"),
        (
            EventInput("x", dt.datetime(2026, 3, 2, 10), attendees=[Attendee("pas-une-adresse")]),
            "participant",
        ),
        (EventInput("x" * 600, dt.datetime(2026, 3, 2, 10)), "trop long"),
        (EventInput("x", dt.date(2026, 3, 2), dt.datetime(2026, 3, 3, 10)), "tous deux"),
    ],
)
def test_invalid_events_are_refused_in_french(store, database, data, expected):
    with pytest.raises(InvalidEvent) as caught:
        store.create(ALICE, data)
    assert expected in str(caught.value)
    assert database[COLLECTION].count_documents({}) == 0


def test_all_day_event(store):
    event = store.create(ALICE, EventInput("Journée banalisée", dt.date(2026, 3, 27)))
    assert event.all_day and event.start == dt.datetime(2026, 3, 26, 23, tzinfo=dt.UTC)
    [occurrence] = store.events_between(ALICE, dt.datetime(2026, 3, 27, 12), dt.datetime(2026, 3, 28))
    assert (
        occurrence.all_day
        and occurrence.start == dt.date(2026, 3, 27)
        and occurrence.end == dt.date(2026, 3, 28)
    )


def test_due_reminders_for_a_future_notifier(store):
    event = weekly(store, reminders=[15])
    store.create(BRUNO, EventInput("Rendez-vous", dt.datetime(2026, 3, 9, 10, 30), reminders=[0, 30]))
    store.update(ALICE, event.id, {"status": "CANCELLED"}, Scope.OCCURRENCE, dt.datetime(2026, 3, 16, 10))
    due = store.due_reminders(
        dt.datetime(2026, 3, 9, 8, tzinfo=dt.UTC), dt.datetime(2026, 3, 9, 10, tzinfo=dt.UTC)
    )
    assert [(r.owner, r.summary, r.due_at, r.minutes_before) for r in due] == [
        (ALICE, "Conseil pédagogique", dt.datetime(2026, 3, 9, 8, 45, tzinfo=dt.UTC), 15),
        (BRUNO, "Rendez-vous", dt.datetime(2026, 3, 9, 9, 0, tzinfo=dt.UTC), 30),
        (BRUNO, "Rendez-vous", dt.datetime(2026, 3, 9, 9, 30, tzinfo=dt.UTC), 0),
    ]
    assert due[0].series_id == event.id and due[0].recurrence_id is not None
    # The cancelled occurrence has no reminder.
    assert (
        store.due_reminders(dt.datetime(2026, 3, 16, tzinfo=dt.UTC), dt.datetime(2026, 3, 17, tzinfo=dt.UTC))
        == []
    )


def test_attendees_are_indexed_with_their_answers(store):
    event = store.create(
        ALICE,
        EventInput(
            "Jury",
            dt.datetime(2026, 6, 15, 14),
            attendees=[Attendee(BRUNO, "Bruno Petit"), Attendee("ext@example.org", partstat="ACCEPTED")],
        ),
    )
    assert event.organizer == ALICE
    assert [(a.address, a.partstat) for a in event.attendees] == [
        (BRUNO, "NEEDS-ACTION"),
        ("ext@example.org", "ACCEPTED"),
    ]
    updated = store.set_partstat(ALICE, event.id, BRUNO, "TENTATIVE")
    assert updated.attendees[0].partstat == "TENTATIVE" and updated.sequence == 0


def test_a_write_based_on_a_stale_read_is_refused(store, database):
    event = weekly(store)
    stale = database[COLLECTION].find_one({"_id": event.id})
    store.update(ALICE, event.id, {"summary": "Écrit par un autre onglet"})
    component = parse_component(stale["ical"])
    with pytest.raises(EditConflict) as caught:
        store._replace(stale, component)  # what a concurrent edit would do
    assert "modifié entre-temps" in str(caught.value)
    assert store.get(ALICE, event.id).summary == "Écrit par un autre onglet"
