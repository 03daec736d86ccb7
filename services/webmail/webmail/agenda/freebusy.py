"""Free/busy: when colleagues are busy, to choose a slot for a meeting.

Only intervals are returned, never what the events are. An occurrence makes its owner busy unless it is
transparent (TRANSP:TRANSPARENT), cancelled, or an invitation the owner declined.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from webmail.agenda.errors import RangeTooLarge
from webmail.agenda.model import localize, normalise_address, to_utc, zone
from webmail.agenda.store import AgendaStore

#: People asked about in one query.
MAX_PEOPLE = 50

Interval = tuple[dt.datetime, dt.datetime]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, overlapping or touching intervals merged."""
    merged: list[list[dt.datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def busy_periods(
    store: AgendaStore, owners: Iterable[str], start: dt.datetime, end: dt.datetime, tz: str | None = None
) -> dict[str, list[Interval]]:
    """Each person's merged busy intervals within [start, end), in `tz` (default Europe/Paris)."""
    people = list(dict.fromkeys(normalise_address(o) for o in owners if o))
    if len(people) > MAX_PEOPLE:
        raise RangeTooLarge(f"Trop de personnes à la fois (au plus {MAX_PEOPLE}).")
    zone_ = zone(tz or store.default_tz)
    start, end = localize(start, zone_), localize(end, zone_)
    result: dict[str, list[Interval]] = {}
    for person in people:
        intervals = []
        for occurrence in store.events_between(person, start, end, getattr(zone_, "key", None)):
            if occurrence.transparent or occurrence.status == "CANCELLED":
                continue
            if any(a.address == person and a.partstat == "DECLINED" for a in occurrence.attendees):
                continue
            begin = to_utc(occurrence.start, zone_).astimezone(zone_)
            finish = to_utc(occurrence.end, zone_).astimezone(zone_)
            begin, finish = max(begin, start), min(finish, end)
            if finish > begin:
                intervals.append((begin, finish))
        result[person] = merge(intervals)
    return result


def free_slots(
    busy: dict[str, list[Interval]], start: dt.datetime, end: dt.datetime, length: dt.timedelta
) -> list[Interval]:
    """The intervals of at least `length` within [start, end) when nobody in `busy` is busy."""
    everyone = merge(i for intervals in busy.values() for i in intervals)
    slots, cursor = [], start
    for begin, finish in everyone:
        if begin - cursor >= length:
            slots.append((cursor, begin))
        cursor = max(cursor, finish)
    if end - cursor >= length:
        slots.append((cursor, end))
    return slots
