"""Import and export of a whole calendar as one iCalendar (`.ics`) file.

Export writes every event of the owner (series masters, their overridden occurrences, single events) in one
VCALENDAR with the VTIMEZONE definitions they use. Import parses the file with icalendar, checks every
VEVENT, and writes nothing unless the whole file is acceptable: a malformed file gives a CalendarImportError
whose `problems` list, in French, everything wrong with it. Importing the same file twice changes nothing:
events are matched on (UID, RECURRENCE-ID); an event already there is replaced only by a version whose
SEQUENCE is not older, and left alone when identical.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import icalendar

from webmail.agenda import recurrence
from webmail.agenda.errors import CalendarImportError
from webmail.agenda.model import DEFAULT_TZ, PRODID, recurrence_key, zone
from webmail.agenda.store import AgendaStore, parse_component, to_stored, validate_component

#: Largest file accepted, and most events in one file.
MAX_ICS_BYTES = 5 * 1024 * 1024
MAX_COMPONENTS = 5000
#: Problems listed at most (the rest are counted).
MAX_PROBLEMS = 50
#: Properties whose value changes on every write and do not make two versions different.
_VOLATILE = ("DTSTAMP", "LAST-MODIFIED")
_TIME_PROPERTIES = ("DTSTART", "DTEND", "RECURRENCE-ID")


@dataclass
class ImportReport:
    """What an import did: counts, and notes (French) about what was left out on purpose."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)


def export_calendar(store: AgendaStore, owner: str, name: str = "Agenda") -> bytes:
    """Every event of `owner` as one VCALENDAR (with VTIMEZONE), UTF-8 bytes."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("X-WR-CALNAME", name)
    for doc in store.all_documents(owner):
        calendar.add_component(parse_component(doc["ical"]))
    calendar.add_missing_timezones(first_date=dt.date(1970, 1, 1), last_date=dt.date(2100, 1, 1))
    return calendar.to_ical()


def _label(index: int, component: icalendar.Component) -> str:
    summary = str(component.get("SUMMARY", "") or "").strip()
    return f"événement n° {index}" + (f" (« {summary[:60]} »)" if summary else "")


def _pin_floating(component: icalendar.Event, tz) -> None:
    """Give floating times (no time zone) the calendar's zone, so that every reader agrees on them."""
    for name in _TIME_PROPERTIES:
        prop = component.get(name)
        value = getattr(prop, "dt", None)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            component.pop(name)
            component.add(name, value.replace(tzinfo=tz))
    for name, values in (("EXDATE", component.exdates), ("RDATE", [v for v, _ in component.rdates])):
        if any(isinstance(v, dt.datetime) and v.tzinfo is None for v in values):
            component.pop(name)
            component.add(
                name,
                [
                    v.replace(tzinfo=tz) if isinstance(v, dt.datetime) and v.tzinfo is None else v
                    for v in values
                ],
            )


def _zone_problem(component: icalendar.Event) -> str | None:
    """A French note when a time of the event names a time zone the platform does not know."""
    for name in _TIME_PROPERTIES:
        prop = component.get(name)
        if prop is None:
            continue
        tzid = prop.params.get("TZID") if hasattr(prop, "params") else None
        value = getattr(prop, "dt", None)
        if not tzid or not isinstance(value, dt.datetime):
            continue
        if value.tzinfo is None or (
            not getattr(value.tzinfo, "key", None) and value.utcoffset() != dt.timedelta(0)
        ):
            return f"fuseau horaire inconnu (TZID={tzid})"
    return None


def _fingerprint(component: icalendar.Event) -> bytes:
    copy = icalendar.Event.from_ical(component.to_ical())
    for name in _VOLATILE:
        copy.pop(name, None)
    return copy.to_ical()


def parse_calendar(data: bytes | str, default_tz: str = DEFAULT_TZ) -> list[icalendar.Event]:
    """The VEVENTs of an `.ics` file, checked and normalised; CalendarImportError listing every problem."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_ICS_BYTES:
        raise CalendarImportError(
            f"Le fichier est trop volumineux ({len(data) // 1024} Ko) : "
            f"au plus {MAX_ICS_BYTES // 1024 // 1024} Mo."
        )
    if not data.strip():
        raise CalendarImportError("Le fichier est vide.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CalendarImportError(
            "Le fichier n'est pas un agenda iCalendar lisible (encodage non UTF-8)."
        ) from exc
    if "\x00" in text or not text.lstrip("\ufeff \t\r\n").upper().startswith("BEGIN:VCALENDAR"):
        raise CalendarImportError(
            "Le fichier n'est pas un agenda iCalendar (il doit commencer par BEGIN:VCALENDAR)."
        )
    data = text.lstrip("\ufeff").encode("utf-8")
    if text.upper().count("BEGIN:VEVENT") > MAX_COMPONENTS:  # before parsing: a cheap bound on the work
        raise CalendarImportError(f"Le fichier contient trop d'événements : au plus {MAX_COMPONENTS}.")
    try:
        # Bytes, never str: icalendar reads a one-line str that names an existing file from disk.
        calendars = icalendar.Calendar.from_ical(data, multiple=True)
    except Exception as exc:
        raise CalendarImportError(
            "Le fichier n'est pas un agenda iCalendar valide (fichier tronqué ou mal formé)."
        ) from exc
    if (
        not calendars
        or calendars[0].name != "VCALENDAR"
        or not text.rstrip().upper().endswith("END:VCALENDAR")
    ):
        raise CalendarImportError(
            "Le fichier n'est pas un agenda iCalendar valide (fichier tronqué ou mal formé)."
        )
    if len(calendars) != 1:
        raise CalendarImportError(
            "Le fichier doit contenir exactement un agenda (BEGIN:VCALENDAR … END:VCALENDAR)."
        )
    calendar = calendars[0]
    version = str(calendar.get("VERSION", "")).strip()
    if version != "2.0":
        raise CalendarImportError(
            f"Version iCalendar non prise en charge ({version or 'absente'}) : "
            "seule la version 2.0 est acceptée."
        )
    try:
        import x_wr_timezone

        calendar = x_wr_timezone.to_standard(calendar)
    except ImportError:  # pragma: no cover - installed with recurring-ical-events
        pass
    except Exception as exc:
        raise CalendarImportError("Fuseau horaire de l'agenda (X-WR-TIMEZONE) invalide.") from exc
    events = list(calendar.walk("VEVENT"))
    if len(events) > MAX_COMPONENTS:
        raise CalendarImportError(
            f"Le fichier contient trop d'événements ({len(events)}) : au plus {MAX_COMPONENTS}."
        )
    tz = zone(default_tz)
    problems: list[str] = []
    for index, component in enumerate(events, start=1):
        label = _label(index, component)
        if component.errors:
            names = ", ".join(sorted({name for name, _ in component.errors}))
            problems.append(f"{label} : propriété illisible ({names})")
            continue
        if component.get("DTSTART") is None:
            problems.append(f"{label} : DTSTART manquant (début de l'événement)")
            continue
        zone_problem = _zone_problem(component)
        if zone_problem:
            problems.append(f"{label} : {zone_problem}")
            continue
        if not str(component.get("UID", "")).strip():
            digest = hashlib.sha256(component.to_ical()).hexdigest()[:32]
            component.add("UID", f"import-{digest}")
        try:
            _pin_floating(component, tz)
            found = validate_component(component, override=component.get("RECURRENCE-ID") is not None)
        except Exception as exc:  # noqa: BLE001 - a component icalendar accepted but cannot compute on
            found = [f"contenu incohérent ({type(exc).__name__})"]
        problems.extend(f"{label} : {p}" for p in found)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"… et {len(problems) - MAX_PROBLEMS} autres problèmes")
        raise CalendarImportError("Le fichier n'a pas été importé, rien n'a été enregistré :", shown)
    return events


def import_calendar(store: AgendaStore, owner: str, data: bytes | str) -> ImportReport:
    """Import an `.ics` file into `owner`'s calendar: everything, or nothing when anything is wrong."""
    events = parse_calendar(data, store.default_tz)
    report = ImportReport()
    # The last of several versions of one (UID, RECURRENCE-ID) in the file wins, unless it is older.
    chosen: dict[tuple[str, str], icalendar.Event] = {}
    for component in events:
        tz = recurrence.component_tz(component, store.default_tz)
        rid = component.get("RECURRENCE-ID")
        key = (str(component["UID"]), recurrence_key(rid.dt, tz) if rid is not None else "")
        previous = chosen.get(key)
        if previous is None or int(component.get("SEQUENCE", 0) or 0) >= int(
            previous.get("SEQUENCE", 0) or 0
        ):
            chosen[key] = component
    masters = [(k, c) for k, c in chosen.items() if not k[1]]
    overrides = [(k, c) for k, c in chosen.items() if k[1]]
    # One read of the owner's calendar, not one query per UID (each is a scan on FerretDB v1).
    wanted = {uid for uid, _ in chosen}
    existing_by_uid: dict[str, dict[tuple[str, str], Any]] = {uid: {} for uid in wanted}
    for doc in store.all_documents(owner):
        if doc["uid"] in wanted:
            stored = to_stored(doc)
            existing_by_uid[doc["uid"]][(doc["uid"], doc.get("recurrence", ""))] = stored
    series_ids: dict[str, str] = {}
    fresh: list[dict[str, Any]] = []
    for (uid, rkey), component in masters + overrides:
        current = existing_by_uid[uid].get((uid, rkey))
        series_id = series_ids.get(uid)
        if series_id is None and rkey:
            master = existing_by_uid[uid].get((uid, ""))
            series_id = master.id if master is not None else None
        if current is None:
            doc = store.new_document(owner, component, series_id=series_id)
            fresh.append(doc)
            stored = to_stored(doc)
            report.created += 1
        elif int(component.get("SEQUENCE", 0) or 0) < current.sequence:
            report.unchanged += 1
            report.notes.append(
                f"« {current.summary} » : version plus ancienne que celle de l'agenda, ignorée."
            )
            stored = current
        elif _fingerprint(component) == _fingerprint(parse_component(current.ical)):
            report.unchanged += 1
            stored = current
        else:
            stored = store.replace_component(owner, current.id, component)
            report.updated += 1
        if not rkey:
            series_ids[uid] = stored.id
    # New events in one round trip, masters before their overrides.
    store.insert_documents(fresh)
    return report


def calendar_of(components: list[icalendar.Event], method: str | None = None, extra: Mapping | None = None):
    """A VCALENDAR around `components` (with VTIMEZONE), optionally with an iTIP METHOD."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    if method:
        calendar.add("METHOD", method)
    for name, value in (extra or {}).items():
        calendar.add(name, value)
    for component in components:
        calendar.add_component(component)
    calendar.add_missing_timezones(first_date=dt.date(1970, 1, 1), last_date=dt.date(2100, 1, 1))
    return calendar
