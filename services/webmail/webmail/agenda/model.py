"""The agenda's data model: what callers pass in and get back, and time helpers.

The source of truth of an event is its iCalendar component (a VEVENT, with RRULE/RDATE/EXDATE for a series
and VALARM sub-components for reminders), stored as text. The dataclasses here are what the library takes
from and gives to its callers (the calendar views, the notifier, the invitation handling).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from webmail.agenda.errors import InvalidEvent

#: Time zone of events created without one, and of range queries that do not name one.
DEFAULT_TZ = "Europe/Paris"
#: `until` of a series that never ends (an RRULE without COUNT or UNTIL).
FAR_FUTURE = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
#: PRODID of the calendars the platform writes.
PRODID = "-//Academie de Montpellier//Webmail academique//FR"

PARTSTATS = ("NEEDS-ACTION", "ACCEPTED", "TENTATIVE", "DECLINED", "DELEGATED")
STATUSES = ("CONFIRMED", "TENTATIVE", "CANCELLED")
#: Reminders: at most this many per event, at most this long before the start.
MAX_REMINDERS = 5
MAX_REMINDER_MINUTES = 4 * 7 * 24 * 60
#: Text limits, so that a document stays small.
MAX_SUMMARY = 500
MAX_TEXT = 10_000
MAX_ATTENDEES = 500


def zone(name: str | None) -> ZoneInfo:
    """The ZoneInfo of an IANA name (default Europe/Paris); InvalidEvent for an unknown name."""
    try:
        return ZoneInfo(name or DEFAULT_TZ)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidEvent(f"Fuseau horaire inconnu : « {name} ».") from exc


def localize(value: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """`value` in `tz`: a naive datetime is a wall-clock time there, an aware one is converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=tz)
    return value.astimezone(tz)


def to_utc(value: dt.datetime | dt.date, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of a datetime (naive = wall clock in `tz`) or of midnight of a date in `tz`."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return localize(value, tz).astimezone(dt.UTC)


def recurrence_key(value: dt.datetime | dt.date, tz: ZoneInfo) -> str:
    """A canonical string for a recurrence id: UTC `YYYYMMDDTHHMMSSZ`, or `YYYYMMDD` for a date."""
    if isinstance(value, dt.datetime):
        return to_utc(value, tz).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def normalise_address(value: str) -> str:
    """An e-mail address from an address or a `mailto:` URI, trimmed and lower-cased."""
    value = str(value or "").strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    return value.strip().strip("<>").lower()


@dataclass(frozen=True)
class Attendee:
    """A participant of an event and their answer (PARTSTAT)."""

    address: str
    name: str = ""
    partstat: str = "NEEDS-ACTION"
    role: str = "REQ-PARTICIPANT"
    rsvp: bool = True


@dataclass
class EventInput:
    """What a user fills in to create an event.

    Naive datetimes are wall-clock times in `tz`; dates (not datetimes) make an all-day event. `end`
    defaults to one hour after `start` (the next day for an all-day event). `rrule` is an RFC 5545 rule
    such as `FREQ=WEEKLY;BYDAY=MO`; `reminders` are minutes before the start.
    """

    summary: str
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date | None = None
    tz: str = DEFAULT_TZ
    location: str = ""
    description: str = ""
    rrule: str | None = None
    exdates: list[dt.datetime | dt.date] = field(default_factory=list)
    rdates: list[dt.datetime | dt.date] = field(default_factory=list)
    attendees: list[Attendee] = field(default_factory=list)
    reminders: list[int] = field(default_factory=list)
    transparent: bool = False
    status: str = "CONFIRMED"
    uid: str | None = None


#: Keys an update may change (`AgendaStore.update`).
CHANGEABLE = frozenset(
    {
        "summary",
        "start",
        "end",
        "tz",
        "location",
        "description",
        "rrule",
        "attendees",
        "reminders",
        "transparent",
        "status",
    }
)


class Scope:
    """Which part of a series an edit applies to."""

    SERIES = "series"
    OCCURRENCE = "occurrence"
    FOLLOWING = "following"
    ALL = (SERIES, OCCURRENCE, FOLLOWING)


@dataclass(frozen=True)
class StoredEvent:
    """One stored document: a series (or single event) master, or an overridden occurrence."""

    id: str
    owner: str
    uid: str
    series_id: str
    kind: str  # "master" or "override"
    sequence: int
    summary: str
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    until: dt.datetime  # UTC
    tzid: str
    all_day: bool
    recurring: bool
    recurrence_id: dt.datetime | None
    organizer: str
    attendees: tuple[Attendee, ...]
    reminders: tuple[int, ...]
    transparent: bool
    status: str
    external: bool
    ical: str


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of an event in a range, with times in the requested time zone.

    `event_id` is the document that holds it (the override for a modified occurrence, else the master),
    `series_id` the master's id; `recurrence_id` is the occurrence's original start (None for an event
    that does not repeat): pass it back to edit or delete this occurrence only.
    """

    event_id: str
    series_id: str
    uid: str
    recurrence_id: dt.datetime | dt.date | None
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date
    all_day: bool
    summary: str
    location: str
    description: str
    status: str
    transparent: bool
    organizer: str
    attendees: tuple[Attendee, ...]
    reminders: tuple[int, ...]
    recurring: bool
    modified: bool


@dataclass(frozen=True)
class DueReminder:
    """A reminder to send: occurrence `start` of `summary`, `minutes_before` it, due at `due_at` (UTC)."""

    owner: str
    event_id: str
    series_id: str
    uid: str
    recurrence_id: dt.datetime | dt.date | None
    summary: str
    start: dt.datetime
    due_at: dt.datetime
    minutes_before: int
