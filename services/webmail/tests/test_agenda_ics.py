"""`.ics` import and export of a whole calendar: round trip with recurrences and exceptions, idempotent
import, and malformed files refused with French errors and nothing written. Runs against the real
database."""

from __future__ import annotations

import datetime as dt

import icalendar
import pytest

from webmail.agenda.errors import CalendarImportError
from webmail.agenda.ics import MAX_ICS_BYTES, export_calendar, import_calendar, parse_calendar
from webmail.agenda.model import Attendee, EventInput, Scope
from webmail.agenda.store import COLLECTION, AgendaStore

pytestmark = pytest.mark.integration

ALICE = "alice.martin@ac-montpellier.fr"
BRUNO = "bruno.petit@ac-montpellier.fr"
YEAR = (dt.datetime(2026, 1, 1), dt.datetime(2027, 1, 1))

VALID_EVENT = (
    "BEGIN:VEVENT\r\nUID:ok-1@example.org\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;TZID=Europe/Paris:20260302T100000\r\nDTEND;TZID=Europe/Paris:20260302T110000\r\n"
    "SUMMARY:Valide\r\nEND:VEVENT\r\n"
)


def wrap(*events: str, version: str = "2.0") -> bytes:
    body = "".join(events)
    return f"BEGIN:VCALENDAR\r\nVERSION:{version}\r\nPRODID:-//test//\r\n{body}END:VCALENDAR\r\n".encode()


@pytest.fixture
def store(database):
    store = AgendaStore(database)
    store.ensure_indexes()
    return store


def snapshot(store, owner):
    return [
        (o.uid, o.start, o.end, o.summary, o.location, o.recurrence_id, o.status, o.reminders, o.modified)
        for o in store.events_between(owner, *YEAR)
    ]


def build_calendar(store):
    series = store.create(
        ALICE,
        EventInput(
            "Conseil pédagogique",
            dt.datetime(2026, 1, 5, 10),
            dt.datetime(2026, 1, 5, 11, 30),
            rrule="FREQ=WEEKLY;BYDAY=MO",
            location="Salle des professeurs",
            reminders=[15],
            attendees=[Attendee(BRUNO, "Bruno Petit")],
        ),
    )
    store.delete(ALICE, series.id, Scope.OCCURRENCE, dt.datetime(2026, 2, 16, 10))
    store.update(
        ALICE,
        series.id,
        {"summary": "Conseil (déplacé)", "start": dt.datetime(2026, 3, 31, 14)},
        Scope.OCCURRENCE,
        dt.datetime(2026, 3, 30, 10),
    )
    store.create(ALICE, EventInput("Journée portes ouvertes", dt.date(2026, 3, 14)))
    store.create(ALICE, EventInput("Jury", dt.datetime(2026, 6, 20, 9), transparent=True))
    return series


def test_round_trip_keeps_recurrences_and_exceptions(store):
    series = build_calendar(store)
    before = snapshot(store, ALICE)
    assert len(before) == 52 - 1 + 2  # 52 Mondays, one excluded, plus two single events
    data = export_calendar(store, ALICE)
    calendar = icalendar.Calendar.from_ical(data)
    assert {c.name for c in calendar.subcomponents} == {"VTIMEZONE", "VEVENT"}
    assert b"EXDATE;TZID=Europe/Paris:20260216T100000" in data
    assert b"RECURRENCE-ID;TZID=Europe/Paris:20260330T100000" in data

    report = import_calendar(store, BRUNO, data)
    assert (report.created, report.updated, report.unchanged) == (4, 0, 0)
    assert snapshot(store, BRUNO) == before
    override = next(e for e in store.find_uid(BRUNO, series.uid) if e.kind == "override")
    assert override.series_id == store.find_uid(BRUNO, series.uid)[0].id

    # Import twice: nothing duplicated; export of the copy gives the same calendar.
    again = import_calendar(store, BRUNO, data)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert snapshot(store, BRUNO) == before
    assert snapshot_after_reimport(store, export_calendar(store, BRUNO)) == before


def snapshot_after_reimport(store, data):
    import_calendar(store, "chloe.roux@ac-montpellier.fr", data)
    return snapshot(store, "chloe.roux@ac-montpellier.fr")


def test_newer_version_replaces_older_is_ignored(store):
    event = VALID_EVENT.replace("SUMMARY:Valide", "SUMMARY:Version 2\r\nSEQUENCE:2")
    assert import_calendar(store, ALICE, wrap(event)).created == 1
    older = VALID_EVENT.replace("SUMMARY:Valide", "SUMMARY:Version 1\r\nSEQUENCE:1")
    report = import_calendar(store, ALICE, wrap(older))
    assert report.unchanged == 1 and "plus ancienne" in report.notes[0]
    newer = VALID_EVENT.replace("SUMMARY:Valide", "SUMMARY:Version 3\r\nSEQUENCE:3")
    assert import_calendar(store, ALICE, wrap(newer)).updated == 1
    [stored] = store.find_uid(ALICE, "ok-1@example.org")
    assert stored.summary == "Version 3"


def test_event_without_uid_gets_a_stable_one(store):
    event = VALID_EVENT.replace("UID:ok-1@example.org\r\n", "")
    assert import_calendar(store, ALICE, wrap(event)).created == 1
    assert import_calendar(store, ALICE, wrap(event)).unchanged == 1


def test_floating_times_are_pinned_to_paris(store):
    event = VALID_EVENT.replace(";TZID=Europe/Paris", "")
    import_calendar(store, ALICE, wrap(event))
    [occurrence] = store.events_between(ALICE, dt.datetime(2026, 3, 2), dt.datetime(2026, 3, 3))
    assert occurrence.start.astimezone(dt.UTC) == dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def test_x_wr_timezone_calendars_are_understood(store):
    event = VALID_EVENT.replace(
        "DTSTART;TZID=Europe/Paris:20260302T100000", "DTSTART:20260302T090000Z"
    ).replace("DTEND;TZID=Europe/Paris:20260302T110000", "DTEND:20260302T100000Z")
    data = wrap(event).replace(b"VERSION:2.0\r\n", b"VERSION:2.0\r\nX-WR-TIMEZONE:Europe/Paris\r\n")
    import_calendar(store, ALICE, data)
    [occurrence] = store.events_between(ALICE, dt.datetime(2026, 3, 2), dt.datetime(2026, 3, 3))
    assert occurrence.start == dt.datetime(2026, 3, 2, 10, tzinfo=occurrence.start.tzinfo)


MISSING_DTSTART = "BEGIN:VEVENT\r\nUID:bad-1\r\nSUMMARY:Sans début\r\nEND:VEVENT\r\n"
BROKEN_RULE = VALID_EVENT.replace("UID:ok-1", "UID:bad-2").replace(
    "SUMMARY:Valide", "SUMMARY:Règle\r\nRRULE:FREQ=FOO"
)
BROKEN_DATE = VALID_EVENT.replace("UID:ok-1", "UID:bad-3").replace("20260302T100000", "2026030")
UNKNOWN_ZONE = VALID_EVENT.replace("UID:ok-1", "UID:bad-4").replace("TZID=Europe/Paris", "TZID=Mars/Olympus")
REVERSED = VALID_EVENT.replace("UID:ok-1", "UID:bad-5").replace("T110000", "T090000")
UNBOUNDED_DENSE = VALID_EVENT.replace("UID:ok-1", "UID:bad-6").replace(
    "SUMMARY:Valide", "SUMMARY:x\r\nRRULE:FREQ=SECONDLY"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (wrap(VALID_EVENT)[:150], "tronqué"),
        (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "iCalendar"),
        (b"ceci n'est pas un agenda", "BEGIN:VCALENDAR"),
        (b"", "vide"),
        ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nSUMMARY:é\r\n".encode("latin-1"), "UTF-8"),
        (wrap(VALID_EVENT, version="1.0"), "Version iCalendar non prise en charge (1.0)"),
        (wrap(VALID_EVENT, MISSING_DTSTART), "événement n° 2 (« Sans début ») : DTSTART manquant"),
        (wrap(VALID_EVENT, BROKEN_RULE), "propriété illisible (RRULE)"),
        (wrap(BROKEN_DATE), "propriété illisible (DTSTART)"),
        (wrap(UNKNOWN_ZONE), "fuseau horaire inconnu (TZID=Mars/Olympus)"),
        (wrap(REVERSED), "la fin précède le début"),
        (wrap(UNBOUNDED_DENSE), "trop fréquente"),
        (wrap(VALID_EVENT) + b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "exactement un agenda"),
    ],
)
def test_malformed_files_are_refused_and_nothing_is_written(store, database, data, expected):
    with pytest.raises(CalendarImportError) as caught:
        import_calendar(store, ALICE, data)
    assert expected in str(caught.value)
    assert database[COLLECTION].count_documents({}) == 0


def test_all_problems_are_listed(store):
    with pytest.raises(CalendarImportError) as caught:
        import_calendar(store, ALICE, wrap(VALID_EVENT, MISSING_DTSTART, REVERSED, UNKNOWN_ZONE))
    assert len(caught.value.problems) == 3
    assert "rien n'a été enregistré" in caught.value.message


def test_huge_files_and_too_many_events_are_refused():
    with pytest.raises(CalendarImportError) as caught:
        parse_calendar(b"BEGIN:VCALENDAR\r\n" + b"X" * (MAX_ICS_BYTES + 1))
    assert "trop volumineux" in str(caught.value)
    many = wrap(*(VALID_EVENT.replace("ok-1", f"e{i}") for i in range(5001)))
    assert len(many) < MAX_ICS_BYTES
    with pytest.raises(CalendarImportError) as caught:
        parse_calendar(many)
    assert "trop d'événements" in str(caught.value)


def test_a_path_is_never_read_from_disk():
    with pytest.raises(CalendarImportError):
        parse_calendar("/etc/passwd")
