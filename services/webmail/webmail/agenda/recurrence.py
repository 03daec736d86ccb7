"""Recurrence rules: validation, the end of a series, and bounded expansion over a window.

Expansion is done by recurring-ical-events (RRULE, RDATE, EXDATE and RECURRENCE-ID overrides, with time
zones); dateutil is used only to check a rule and to find a series' last occurrence. The cost of a query
is bounded whatever the rule:

- rules finer than daily (`FREQ=SECONDLY/MINUTELY/HOURLY`) and rules with more than `MAX_PER_DAY`
  occurrences in a day are refused when an event is written (a professional agenda has no use for them);
  `COUNT` is at most `MAX_COUNT`;
- a range query covers at most `MAX_WINDOW` and returns at most `MAX_OCCURRENCES` occurrences, otherwise
  it raises with a French message (`RangeTooLarge`, `TooManyOccurrences`); expansion never goes past the
  requested window, so an unbounded rule costs what its occurrences in the window cost (plus dateutil's
  walk from the series' start, at most `MAX_PER_DAY` per day).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from collections.abc import Iterable

import icalendar
import recurring_ical_events
from dateutil import rrule as du_rrule

from webmail.agenda.errors import RangeTooLarge, TooManyOccurrences
from webmail.agenda.model import FAR_FUTURE, to_utc, zone

MAX_WINDOW = dt.timedelta(days=400)
MAX_OCCURRENCES = 5000
MAX_COUNT = 10_000
MAX_PER_DAY = 24
REFUSED_FREQUENCIES = {"SECONDLY": "chaque seconde", "MINUTELY": "chaque minute", "HOURLY": "chaque heure"}


def component_tz(component: icalendar.Event, default: str | None = None):
    """The time zone of an event's DTSTART (its TZID), else `default` (Europe/Paris)."""
    start = component.get("DTSTART")
    value = getattr(start, "dt", None)
    tzinfo = getattr(value, "tzinfo", None)
    key = getattr(tzinfo, "key", None)
    if key:
        return zone(key)
    if tzinfo is not None and value.utcoffset() == dt.timedelta(0):
        return dt.UTC
    return zone(default)


def _naive_midnight(value: dt.date) -> dt.datetime:
    return dt.datetime(value.year, value.month, value.day)


def _dateutil_start(component: icalendar.Event) -> dt.datetime:
    start = component.start
    return start if isinstance(start, dt.datetime) else _naive_midnight(start)


def normalise_rules(component: icalendar.Event) -> None:
    """Make each RRULE's UNTIL the type RFC 5545 wants for DTSTART: UTC for a zoned start, a date for a
    date, so that the rule means the same to every reader (dateutil refuses the mixed forms)."""
    start = component.start
    rules = component.get("RRULE")
    if rules is None:
        return
    for rule in rules if isinstance(rules, list) else [rules]:
        untils = rule.get("UNTIL")
        if not untils:
            continue
        until = untils[0]
        if isinstance(start, dt.datetime):
            if not isinstance(until, dt.datetime):
                until = dt.datetime(until.year, until.month, until.day, 23, 59, 59)
            if start.tzinfo is not None:
                if until.tzinfo is None:
                    until = until.replace(tzinfo=start.tzinfo)
                until = until.astimezone(dt.UTC)
            elif until.tzinfo is not None:
                until = until.replace(tzinfo=None)
        elif isinstance(until, dt.datetime):
            until = until.date()
        rule["UNTIL"] = [until]


def dateutil_rules(component: icalendar.Event) -> list[du_rrule.rrule]:
    """The component's RRULEs as dateutil rules (after `normalise_rules`); ValueError if malformed."""
    start = _dateutil_start(component)
    rules = []
    for rule in component.rrules:
        text = rule.to_ical().decode()
        parsed = du_rrule.rrulestr(text, dtstart=start, forceset=False)
        if not isinstance(parsed, du_rrule.rrule):  # pragma: no cover - forceset=False gives one rule
            raise ValueError(text)
        rules.append(parsed)
    return rules


def check_rules(component: icalendar.Event) -> list[str]:
    """What is wrong with the component's recurrence, in French (empty when it is acceptable)."""
    problems = []
    try:
        rrules = component.rrules
    except Exception:  # noqa: BLE001 - icalendar raises various errors on a malformed rule
        return ["règle de répétition (RRULE) illisible"]
    if len(rrules) > 1:
        problems.append("une seule règle de répétition (RRULE) par événement est acceptée")
    for rule in rrules:
        freq = (rule.get("FREQ") or [""])[0]
        if freq in REFUSED_FREQUENCIES:
            problems.append(f"répétition trop fréquente ({REFUSED_FREQUENCIES[freq]}) : au plus une par jour")
        count = (rule.get("COUNT") or [None])[0]
        if count is not None and not 0 < int(count) <= MAX_COUNT:
            problems.append(f"nombre de répétitions (COUNT={count}) hors limites (1 à {MAX_COUNT})")
    if problems:
        return problems
    try:
        normalise_rules(component)
        parsed = dateutil_rules(component)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        return ["règle de répétition (RRULE) invalide"]
    for rule in parsed:
        first = list(itertools.islice(rule, MAX_PER_DAY + 1))
        if len(first) > MAX_PER_DAY and first[-1] - first[0] < dt.timedelta(days=1):
            problems.append(f"répétition trop fréquente : plus de {MAX_PER_DAY} occurrences par jour")
        until = rule._until
        if until is not None and until < rule._dtstart:
            problems.append("la fin de la répétition (UNTIL) précède le début de l'événement")
    if len(component.rdates) > MAX_COUNT or len(component.exdates) > MAX_COUNT:
        problems.append(f"trop de dates (RDATE/EXDATE) : au plus {MAX_COUNT}")
    return problems


def duration_of(component: icalendar.Event) -> dt.timedelta:
    """The length of the event (DTEND - DTSTART, or DURATION; zero or one day when neither is given)."""
    return component.end - component.start


def series_until(component: icalendar.Event, default_tz: str | None = None) -> dt.datetime:
    """The UTC end of the series' last occurrence, or FAR_FUTURE for a rule without an end.

    An upper bound: it is what range queries use to skip series that ended before the window.
    """
    tz = component_tz(component, default_tz)
    length = duration_of(component)
    last = component.start
    for rule in dateutil_rules(component):
        if rule._count is None and rule._until is None:
            return FAR_FUTURE
        if rule._count is not None:
            tail = deque(itertools.islice(rule, MAX_COUNT), maxlen=1)
            candidate = tail[0] if tail else None
        else:
            candidate = rule._until
        if candidate is not None:
            if not isinstance(component.start, dt.datetime):
                candidate = candidate.date() if isinstance(candidate, dt.datetime) else candidate
            if to_utc(candidate, tz) > to_utc(last, tz):
                last = candidate
    for value, _period in component.rdates:
        if to_utc(value, tz) > to_utc(last, tz):
            last = value
    return to_utc(last, tz) + length


def is_recurring(component: icalendar.Event) -> bool:
    """True for a series master (RRULE or RDATE)."""
    return bool(component.get("RRULE") or component.get("RDATE"))


def check_window(start: dt.datetime, end: dt.datetime) -> None:
    """Refuse an empty, reversed or too long range, in French."""
    if end <= start:
        raise RangeTooLarge("La fin de la période demandée doit être après son début.")
    if end - start > MAX_WINDOW:
        raise RangeTooLarge(
            f"La période demandée est trop longue (plus de {MAX_WINDOW.days} jours) : "
            "choisissez une période plus courte."
        )


def expand(
    components: Iterable[icalendar.Event], start: dt.datetime, end: dt.datetime, limit: int = MAX_OCCURRENCES
) -> list[icalendar.Event]:
    """The occurrences of one series (master plus its overrides) between `start` and `end` (aware).

    Raises TooManyOccurrences when there are more than `limit`.
    """
    calendar = icalendar.Calendar()
    for component in components:
        calendar.add_component(component)
    occurrences = recurring_ical_events.of(calendar).between(start, end)
    if len(occurrences) > limit:
        raise TooManyOccurrences(
            f"Trop d'occurrences dans cette période (plus de {MAX_OCCURRENCES}) : "
            "choisissez une période plus courte."
        )
    return occurrences


def count_before(component: icalendar.Event, moment: dt.datetime | dt.date) -> int:
    """How many occurrences of the component's RRULE start before `moment` (bounded by MAX_COUNT)."""
    rules = dateutil_rules(component)
    if not rules:
        return 0
    if not isinstance(moment, dt.datetime):
        moment = _naive_midnight(moment)
    count = 0
    for value in itertools.islice(rules[0], MAX_COUNT):
        if value >= moment:
            break
        count += 1
    return count
