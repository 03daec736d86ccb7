"""The calendar pages: day, week and month views, event forms, invitations, free/busy, `.ics` files.

Everything goes through `webmail.agenda` with the session's address as owner, so no page can read or
change another user's calendar: an event id that is not the user's answers 404, exactly like a missing one.
Pages work without JavaScript (forms, POST then redirect); static/agenda.js only keeps the slot-picker link
in step with the form's participants and date, asks before a deletion, turns a click on the hour grid
into a new event at that time and posts the "Déplacer" form for an event dragged on the grid.

Routes:

- `GET /agenda` → the week; `GET /agenda/{jour|semaine|mois}?date=AAAA-MM-JJ` a view (day and week on
  the hour grid of `webmail.agenda.grid`, whose rules are `GET /agenda/grille.css`);
- `GET|POST /agenda/nouveau` the new-event form (`?debut=&fin=&participants=` prefill it);
- `GET /agenda/evenement/{id}?occurrence=…` an event (or one occurrence of a series);
- `GET|POST /agenda/evenement/{id}/modifier`, `POST …/deplacer`, `POST …/supprimer` with a scope
  (`portee` = `occurrence`, `suivantes`, `serie`);
- `POST /agenda/evenement/{id}/repondre` one's own answer to an invitation stored in the calendar;
- `GET /agenda/disponibilites?participants=&date=&duree=` free/busy of academy colleagues, free slots;
- `GET /agenda/exporter` the whole calendar as `.ics`; `GET|POST /agenda/importer` an `.ics` upload;
- `POST /agenda/invitation/{entry_id}` the reader's buttons on an invitation, a reply or a cancellation.

Invitations (iTIP over iMIP) travel through the real mail path: the organiser's REQUEST/CANCEL and the
invitee's REPLY are submitted through ingest's submission port as the user (webmail.submission). Replies
reach the organiser's calendar without any action on their part: a REPLY is applied when the organiser
opens it in the reader, and every calendar page first applies the replies waiting in the inbox
(`apply_pending_replies`); each applied message is remembered in `calendar_itip_processed` (by mailbox entry
id) so it is applied once. Replies from outside the academy need the organiser's confirmation (a button).

Reminders (`ReminderNotifier`) are e-mails: a task of each webmail process polls `due_reminders` and sends
each due reminder through the MX to the calendar's owner, claimed first in `calendar_reminders_sent` (unique
id per owner, event, occurrence and offset) so that several processes never send one twice. The mail lands
in the inbox and the live stream (`/evenements`) announces it in any open webmail page.
"""

from __future__ import annotations

import asyncio
import calendar as pycalendar
import contextlib
import datetime as dt
import email.policy
import email.utils
import hashlib
import logging
import re
import smtplib
import urllib.parse
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, NamedTuple

from aiohttp import web
from pymongo.errors import DuplicateKeyError

from common.config import Settings
from common.db import BlobNotFound, indexed_find, purge_expired, utcnow
from common.mailstore import INBOX
from webmail import french, submission
from webmail.agenda import freebusy, ics, itip
from webmail.agenda import grid as hour_grid
from webmail.agenda.errors import (
    AgendaError,
    CalendarImportError,
    EventNotFound,
    ExternalItip,
    ItipError,
)
from webmail.agenda.model import (
    DEFAULT_TZ,
    Attendee,
    EventInput,
    Scope,
    StoredEvent,
    normalise_address,
)
from webmail.agenda.store import AgendaStore, attendees_of, parse_component, reminders_of, set_organizer
from webmail.app import DATABASE, PUBLISHER, SETTINGS, flash, get_session, login_required, render, run_sync
from webmail.mailbox import Mailbox

log = logging.getLogger("webmail.agenda")

AGENDA = web.AppKey("agenda_store", AgendaStore)
REMINDERS = web.AppKey("agenda_reminders", object)

PARIS = french.PARIS
VIEWS = {"jour": "Jour", "semaine": "Semaine", "mois": "Mois"}
SCOPES = {"occurrence": Scope.OCCURRENCE, "suivantes": Scope.FOLLOWING, "serie": Scope.SERIES}
PARTSTAT_LABELS = {
    "ACCEPTED": "Accepté",
    "TENTATIVE": "Peut-être",
    "DECLINED": "Refusé",
    "NEEDS-ACTION": "En attente de réponse",
    "DELEGATED": "Délégué",
}
ANSWER_BUTTONS = (("ACCEPTED", "Accepter"), ("TENTATIVE", "Peut-être"), ("DECLINED", "Refuser"))
REPETITIONS = {
    "aucune": ("Ne se répète pas", ""),
    "jour": ("Tous les jours", "FREQ=DAILY"),
    "jours_ouvres": ("Du lundi au vendredi", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    "semaine": ("Chaque semaine", "FREQ=WEEKLY"),
    "deux_semaines": ("Toutes les deux semaines", "FREQ=WEEKLY;INTERVAL=2"),
    "mois": ("Chaque mois", "FREQ=MONTHLY"),
    "annee": ("Chaque année", "FREQ=YEARLY"),
    "personnalisee": ("Règle personnalisée (RFC 5545)", ""),
}
#: Reminder choices offered (minutes before the start); an event's other values are shown too.
REMINDER_CHOICES = (0, 5, 15, 30, 60, 1440)
#: Free/busy: the hours shown and searched, and the slot lengths offered.
DAY_START, DAY_END = 8, 19
DURATIONS = (30, 60, 90, 120)
#: An uploaded `.ics` larger than this is refused before parsing (the library checks 5 MB too).
MAX_UPLOAD = ics.MAX_ICS_BYTES
#: Invitation replies looked for in the inbox by a calendar page: the inbox entries received since the
#: last look (less an overlap, for entries stored a little after their `received_at`), at most
#: PENDING_LIMIT, or over PENDING_FIRST_LOOK on the first look.
PENDING_LIMIT = 500
PENDING_OVERLAP = dt.timedelta(minutes=10)
PENDING_FIRST_LOOK = dt.timedelta(days=30)
PROCESSED = "calendar_itip_processed"
#: Per organiser, until when the inbox was looked through for replies: {_id: owner, until}.
PENDING_LOOKED = "calendar_itip_looked"
REMINDERS_SENT = "calendar_reminders_sent"
#: The notifier looks this far back (a reminder missed while no process ran is still sent if this recent).
REMINDER_LOOKBACK = dt.timedelta(minutes=15)
REMINDER_POLL_SECONDS = 30.0
#: Claims of sent reminders are kept this long (a claim only matters while its reminder is due, for
#: REMINDER_LOOKBACK), then purged by the notifier, at most once per REMINDER_PURGE_EVERY.
REMINDER_CLAIMS_KEPT = dt.timedelta(days=2)
REMINDER_PURGE_EVERY = dt.timedelta(hours=1)


# --- formatting ---------------------------------------------------------------------------------------


def reminder_label(minutes: int) -> str:
    if minutes == 0:
        return "À l'heure de début"
    if minutes % 1440 == 0:
        days = minutes // 1440
        return f"{days} jour{'s' if days > 1 else ''} avant"
    if minutes % 60 == 0:
        return f"{minutes // 60} h avant"
    return f"{minutes} min avant"


def _local(value: dt.datetime | dt.date) -> dt.datetime | dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(PARIS) if value.tzinfo else value.replace(tzinfo=PARIS)
    return value


def when_label(start: dt.datetime | dt.date, end: dt.datetime | dt.date) -> str:
    """ "lundi 16 mars 2026, 10:00 – 11:00", or a day (range) for an all-day event."""
    start, end = _local(start), _local(end)
    if not isinstance(start, dt.datetime):
        last = end - dt.timedelta(days=1) if end > start else end
        if last == start:
            return f"{french.day(start)} (journée entière)"
        return f"du {french.day(start)} au {french.day(last)} (journées entières)"
    assert isinstance(end, dt.datetime)
    if end.date() == start.date():
        return f"{french.day(start)}, {start:%H:%M} – {end:%H:%M}"
    return f"{french.day(start)} {start:%H:%M} – {french.day(end)} {end:%H:%M}"


def occurrence_param(value: dt.datetime | dt.date | None) -> str:
    """A recurrence id in a URL or a form: ISO 8601 (with its offset for a time)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value.isoformat()


def parse_occurrence(value: str) -> dt.datetime | dt.date | None:
    """The recurrence id of a URL or form field; None when absent; 404 when malformed."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        if "T" in value:
            moment = dt.datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=PARIS)
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise web.HTTPNotFound() from exc


def event_url(event_id: str, occurrence: dt.datetime | dt.date | None = None, suffix: str = "") -> str:
    url = f"/agenda/evenement/{urllib.parse.quote(event_id, safe='')}{suffix}"
    if occurrence is not None:
        url += "?" + urllib.parse.urlencode({"occurrence": occurrence_param(occurrence)})
    return url


def attendee_rows(attendees, organizer: str = "") -> list[dict[str, str]]:
    return [
        {
            "address": a.address,
            "name": a.name or a.address,
            "partstat": a.partstat,
            "label": PARTSTAT_LABELS.get(a.partstat, a.partstat),
            "organizer": a.address == organizer,
        }
        for a in attendees
    ]


# --- helpers ------------------------------------------------------------------------------------------


def _me(request: web.Request) -> str:
    session = get_session(request)
    assert session is not None
    return normalise_address(session.address)


def _name(request: web.Request) -> str:
    session = get_session(request)
    return (session.display_name or "") if session else ""


def _store(request: web.Request) -> AgendaStore:
    return request.app[AGENDA]


def today() -> dt.date:
    return dt.datetime.now(PARIS).date()


def _date(value: str | None, default: dt.date | None = None) -> dt.date | None:
    try:
        return dt.date.fromisoformat((value or "").strip()) if value else default
    except ValueError:
        return default


def window(view: str, day: dt.date) -> tuple[dt.date, dt.date]:
    """[first, last + 1) days shown by a view: the day; Monday to Sunday; whole weeks around a month."""
    if view == "jour":
        return day, day + dt.timedelta(days=1)
    if view == "semaine":
        monday = day - dt.timedelta(days=day.weekday())
        return monday, monday + dt.timedelta(days=7)
    first = day.replace(day=1)
    last = day.replace(day=pycalendar.monthrange(day.year, day.month)[1])
    start = first - dt.timedelta(days=first.weekday())
    end = last + dt.timedelta(days=7 - last.weekday())
    return start, end


def _shift(view: str, day: dt.date, direction: int) -> dt.date:
    if view == "jour":
        return day + dt.timedelta(days=direction)
    if view == "semaine":
        return day + dt.timedelta(days=7 * direction)
    month = day.month - 1 + direction
    year = day.year + month // 12
    month = month % 12 + 1
    return dt.date(year, month, min(day.day, pycalendar.monthrange(year, month)[1]))


def _title(view: str, first: dt.date, end: dt.date, day: dt.date) -> str:
    if view == "jour":
        return french.day(day).capitalize()
    if view == "semaine":
        last = end - dt.timedelta(days=1)
        return f"Semaine du {first.day} {french.MONTHS[first.month - 1]} au {french.day(last)}"
    return f"{french.MONTHS[day.month - 1].capitalize()} {day.year}"


def occurrence_view(occurrence, me: str) -> dict[str, Any]:
    start, end = _local(occurrence.start), _local(occurrence.end)
    own = next((a.partstat for a in occurrence.attendees if a.address == me), "")
    timed = isinstance(start, dt.datetime)
    return {
        "summary": occurrence.summary or "(sans titre)",
        "location": occurrence.location,
        "time": f"{start:%H:%M} – {end:%H:%M}" if timed else "Journée entière",
        "start_iso": start.isoformat(),
        "when": when_label(start, end),
        "url": event_url(occurrence.event_id, occurrence.recurrence_id),
        "recurring": occurrence.recurring,
        "modified": occurrence.modified,
        "cancelled": occurrence.status == "CANCELLED",
        "invited": bool(own) and occurrence.organizer != me,
        "own_answer": PARTSTAT_LABELS.get(own, "") if own and occurrence.organizer != me else "",
        "declined": own == "DECLINED",
        "meeting": bool(occurrence.attendees),
        "movable": not occurrence.organizer or occurrence.organizer == me,  # an invitation is the organiser's
        "move_url": f"/agenda/evenement/{occurrence.event_id}/deplacer",
        "occurrence": occurrence_param(occurrence.recurrence_id),
        "all_day": not timed,
        "start": start,
        "end": end,
    }


def _days_of(item: dict[str, Any]) -> list[dt.date]:
    """The local days an occurrence covers."""
    start, end = item["start"], item["end"]
    if isinstance(start, dt.datetime):
        first = start.date()
        last = (end - dt.timedelta(microseconds=1)).date() if end > start else first
    else:
        first = start
        last = end - dt.timedelta(days=1) if end > start else start
    days, current = [], first
    while current <= last and len(days) < 400:
        days.append(current)
        current += dt.timedelta(days=1)
    return days


def _split_addresses(text: str) -> list[str]:
    return [p for p in re.split(r"[\s,;]+", text or "") if p]


ADDRESS = re.compile(r"^[^@\s<>\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")


async def _send(request: web.Request, message: EmailMessage) -> str:
    """Submit an iMIP message as the user; '' on success, else the French reason."""
    settings = request.app[SETTINGS]
    recipients = [a for _, a in email.utils.getaddresses([str(v) for v in message.get_all("To") or []]) if a]
    try:
        await run_sync(
            submission.send,
            settings,
            account=_me(request),
            sender=_me(request),
            recipients=recipients,
            data=message.as_bytes(policy=email.policy.SMTP),
        )
    except submission.SubmissionError as exc:
        log.warning("calendar mail not sent: %s", exc.message)
        return exc.message
    log.info("calendar mail sent", extra={"account": _me(request), "recipients": len(recipients)})
    return ""


async def _invite(request: web.Request, stored: StoredEvent, note: str = "invitation") -> str:
    """Send the (updated) invitation of an event the user organises; a French warning or ''."""
    me = _me(request)
    if not stored.attendees or (stored.organizer and stored.organizer != me):
        return ""
    if not [a for a in stored.attendees if a.address != me]:
        return ""
    try:
        message = await run_sync(itip.build_request, _store(request), me, stored.id, _name(request))
    except ItipError:
        return ""
    problem = await _send(request, message)
    if problem:
        return f"L'événement est enregistré, mais l'{note} n'a pas pu être envoyée : {problem}"
    return ""


async def _ensure_organizer(request: web.Request, stored: StoredEvent) -> StoredEvent:
    """An event that got attendees gets the user as ORGANIZER (the library sets it only at creation)."""
    if not stored.attendees or stored.organizer:
        return stored
    store, me = _store(request), _me(request)

    def fix() -> StoredEvent:
        component = store.component(me, stored.id)
        set_organizer(component, me, _name(request))
        return store.replace_component(me, stored.id, component)

    return await run_sync(fix)


# --- views --------------------------------------------------------------------------------------------


def _toolbar(view: str, day: dt.date) -> dict[str, Any]:
    return {
        "view": view,
        "day": day,
        "views": VIEWS,
        "previous_url": f"/agenda/{view}?date={_shift(view, day, -1).isoformat()}",
        "next_url": f"/agenda/{view}?date={_shift(view, day, 1).isoformat()}",
        "today_url": f"/agenda/{view}",
        "view_url": lambda v: f"/agenda/{v}?date={day.isoformat()}",
        "new_url": "/agenda/nouveau?" + urllib.parse.urlencode({"debut": f"{day.isoformat()}T09:00"}),
    }


@login_required
async def agenda_home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/agenda/semaine")


@login_required
async def calendar_page(request: web.Request) -> web.Response:
    view = request.match_info["view"]
    if view not in VIEWS:
        raise web.HTTPNotFound()
    me = _me(request)
    day = _date(request.query.get("date"), today()) or today()
    first, end = window(view, day)
    await apply_pending_replies(request)
    error = ""
    try:
        occurrences = await run_sync(
            _store(request).events_between,
            me,
            dt.datetime.combine(first, dt.time()),
            dt.datetime.combine(end, dt.time()),
            DEFAULT_TZ,
        )
    except AgendaError as exc:
        occurrences, error = [], exc.message
    items = [occurrence_view(o, me) for o in occurrences]
    days = []
    current = first
    by_day: dict[dt.date, list[dict[str, Any]]] = {}
    for item in items:
        for covered in _days_of(item):
            by_day.setdefault(covered, []).append(item)
    while current < end:
        days.append(
            {
                "date": current,
                "iso": current.isoformat(),
                "label": french.day(current).capitalize(),
                "heading": f"{french.DAYS[current.weekday()].capitalize()} {current.day} "
                f"{french.MONTHS[current.month - 1]}",
                "short": f"{french.DAYS[current.weekday()][:3].capitalize()}. {current.day}",
                "weekday": french.DAYS[current.weekday()].capitalize(),
                "number": current.day,
                "today": current == today(),
                "other_month": view == "mois" and current.month != day.month,
                "events": sorted(by_day.get(current, []), key=lambda i: (not i["all_day"], i["start_iso"])),
                "url": f"/agenda/jour?date={current.isoformat()}",
                "new_url": "/agenda/nouveau?"
                + urllib.parse.urlencode({"debut": f"{current.isoformat()}T09:00"}),
            }
        )
        current += dt.timedelta(days=1)
    weeks = [days[i : i + 7] for i in range(0, len(days), 7)]
    grid = None
    if view != "mois":
        grid = hour_grid.layout((d["date"], d["events"]) for d in days)
        for d in days:
            d["timed"], d["all_day"] = grid.days[d["date"]], grid.all_day[d["date"]]
    context = {
        "nav": "agenda",
        "title": _title(view, first, end, day),
        "days": days,
        "weeks": weeks,
        "grid": grid,
        "count": len(items),
        "error": error,
        "weekdays": [d.capitalize() for d in french.DAYS],
        **_toolbar(view, day),
    }
    return await render(request, "agenda/calendar.html", context)


_GRID_CSS = hour_grid.grid_css()


async def grid_stylesheet(request: web.Request) -> web.Response:
    """The rules of the hour grid's classes (`webmail.agenda.grid`): the same for everyone, cacheable."""
    return web.Response(
        text=_GRID_CSS, content_type="text/css", headers={"Cache-Control": "public, max-age=86400"}
    )


# --- the event form -----------------------------------------------------------------------------------


def _rule_choice(rule: str) -> tuple[str, str, str, str]:
    """(choice, custom rule, until date, count) from a stored RRULE text, for the form."""
    if not rule:
        return "aucune", "", "", ""
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    until, count = parts.pop("UNTIL", ""), parts.pop("COUNT", "")
    if until:
        try:
            moment = (
                dt.datetime.strptime(until[:15], "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
                if "T" in until
                else dt.datetime.strptime(until[:8], "%Y%m%d").replace(tzinfo=PARIS)
            )
            until = moment.astimezone(PARIS).date().isoformat()
        except ValueError:
            return "personnalisee", rule, "", ""
    core = ";".join(f"{k}={v}" for k, v in parts.items())
    for key, (_label, preset) in REPETITIONS.items():
        if preset and preset == core:
            return key, "", until, count
    return "personnalisee", rule, "", ""


def _blank_form(start: dt.datetime, end: dt.datetime, participants: str = "") -> dict[str, Any]:
    return {
        "titre": "",
        "date_debut": start.date().isoformat(),
        "heure_debut": start.strftime("%H:%M"),
        "date_fin": end.date().isoformat(),
        "heure_fin": end.strftime("%H:%M"),
        "journee": False,
        "lieu": "",
        "description": "",
        "repetition": "aucune",
        "regle": "",
        "jusqua": "",
        "nombre": "",
        "participants": participants,
        "rappels": [15],
        "disponible": False,
        "portee": "serie",
        "occurrence": "",
    }


def _form_of_event(component, start, end, occurrence: str) -> dict[str, Any]:
    start, end = _local(start), _local(end)
    all_day = not isinstance(start, dt.datetime)
    rule = component.get("RRULE")
    choice, custom, until, count = _rule_choice(rule.to_ical().decode() if rule is not None else "")
    if all_day:
        last = end - dt.timedelta(days=1) if end > start else end
        dates = (start.isoformat(), last.isoformat(), "", "")
    else:
        dates = (start.date().isoformat(), end.date().isoformat(), f"{start:%H:%M}", f"{end:%H:%M}")
    return {
        "titre": str(component.get("SUMMARY", "")),
        "date_debut": dates[0],
        "date_fin": dates[1],
        "heure_debut": dates[2],
        "heure_fin": dates[3],
        "journee": all_day,
        "lieu": str(component.get("LOCATION", "")),
        "description": str(component.get("DESCRIPTION", "")),
        "repetition": choice,
        "regle": custom,
        "jusqua": until,
        "nombre": count,
        "participants": "\n".join(a.address for a in attendees_of(component)),
        "rappels": list(reminders_of(component)),
        "disponible": str(component.get("TRANSP", "")).upper() == "TRANSPARENT",
        "portee": "occurrence" if occurrence else "serie",
        "occurrence": occurrence,
    }


def _form_values(form) -> dict[str, Any]:
    def text(name: str, limit: int = 20_000) -> str:
        return str(form.get(name, "") or "")[:limit]

    reminders = []
    for value in form.getall("rappels", []):
        with contextlib.suppress(ValueError):
            reminders.append(int(str(value)))
    return {
        "titre": text("titre", 600).strip(),
        "date_debut": text("date_debut", 20).strip(),
        "heure_debut": text("heure_debut", 10).strip(),
        "date_fin": text("date_fin", 20).strip(),
        "heure_fin": text("heure_fin", 10).strip(),
        "journee": bool(form.get("journee")),
        "lieu": text("lieu", 10_100),
        "description": text("description", 10_100),
        "repetition": text("repetition", 30),
        "regle": text("regle", 1000).strip(),
        "jusqua": text("jusqua", 20).strip(),
        "nombre": text("nombre", 10).strip(),
        "participants": text("participants"),
        "rappels": sorted(set(reminders)),
        "disponible": bool(form.get("disponible")),
        "portee": text("portee", 20) or "serie",
        "occurrence": text("occurrence", 60),
    }


def _time(value: str) -> dt.time | None:
    try:
        return dt.time.fromisoformat(value) if value else None
    except ValueError:
        return None


def parse_event_form(values: dict[str, Any], me: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The library's fields from the form, and the French error of each wrong field."""
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {"summary": values["titre"] or "(sans titre)"}
    if len(values["titre"]) > 500:
        errors["titre"] = "Le titre est trop long (500 caractères au plus)."
    start_day = _date(values["date_debut"])
    end_day = _date(values["date_fin"]) if values["date_fin"] else start_day
    if start_day is None:
        errors["date_debut"] = "Date de début invalide ou manquante."
    if values["date_fin"] and end_day is None:
        errors["date_fin"] = "Date de fin invalide."
    start: dt.datetime | dt.date | None = None
    end: dt.datetime | dt.date | None = None
    if values["journee"]:
        if start_day and end_day:
            start, end = start_day, end_day + dt.timedelta(days=1)
    else:
        start_time, end_time = _time(values["heure_debut"]), _time(values["heure_fin"])
        if start_time is None:
            errors["heure_debut"] = "Heure de début invalide ou manquante (format HH:MM)."
        if values["heure_fin"] and end_time is None:
            errors["heure_fin"] = "Heure de fin invalide (format HH:MM)."
        if start_day and start_time:
            start = dt.datetime.combine(start_day, start_time)
            if end_day and end_time:
                end = dt.datetime.combine(end_day, end_time)
            elif end_time is None and not values["heure_fin"]:
                end = start + dt.timedelta(hours=1)
    if start is not None and end is not None and end < start:
        errors["heure_fin" if not values["journee"] else "date_fin"] = "La fin précède le début."
    fields["start"], fields["end"] = start, end
    fields["location"] = values["lieu"]
    fields["description"] = values["description"]
    # Repetition
    choice = values["repetition"] if values["repetition"] in REPETITIONS else "aucune"
    rule = ""
    if choice == "personnalisee":
        rule = values["regle"].strip()
        if rule.upper().startswith("RRULE:"):
            rule = rule[6:]
        if not rule:
            errors["regle"] = "Écrivez la règle de répétition (par exemple FREQ=WEEKLY;BYDAY=MO,TH)."
    elif choice != "aucune":
        rule = REPETITIONS[choice][1]
        if values["jusqua"]:
            until = _date(values["jusqua"])
            if until is None:
                errors["jusqua"] = "Date de fin de répétition invalide."
            elif start_day and until < start_day:
                errors["jusqua"] = "La répétition doit finir après le premier événement."
            elif isinstance(start, dt.datetime):
                last = dt.datetime.combine(until, dt.time(23, 59, 59), PARIS).astimezone(dt.UTC)
                rule += f";UNTIL={last:%Y%m%dT%H%M%SZ}"
            else:
                rule += f";UNTIL={until:%Y%m%d}"
        elif values["nombre"]:
            try:
                count = int(values["nombre"])
                if not 1 <= count <= 10_000:
                    raise ValueError
            except ValueError:
                errors["nombre"] = "Nombre d'occurrences invalide (de 1 à 10 000)."
            else:
                rule += f";COUNT={count}"
    fields["rrule"] = rule or None
    # Participants
    addresses, wrong = [], []
    for part in _split_addresses(values["participants"]):
        address = normalise_address(part)
        if not ADDRESS.match(address):
            wrong.append(part)
        elif address not in addresses:
            addresses.append(address)
    if wrong:
        errors["participants"] = "Adresse(s) invalide(s) : " + ", ".join(wrong[:10]) + "."
    if len(addresses) > 100:
        errors["participants"] = "Trop de participants (100 au plus depuis ce formulaire)."
    fields["attendees"] = addresses
    reminders = values["rappels"]
    if any(m < 0 or m > 4 * 7 * 1440 for m in reminders) or len(reminders) > 5:
        errors["rappels"] = "Rappels invalides : 5 au plus, de 0 minute à 4 semaines avant."
    fields["reminders"] = reminders
    fields["transparent"] = values["disponible"]
    return fields, errors


def _attendees(addresses: list[str], existing, me: str) -> list[Attendee]:
    """Attendees of the form; an attendee already there keeps their answer; the organiser is listed."""
    known = {a.address: a for a in existing}
    result = []
    if addresses and me not in addresses:
        own = known.get(me)
        result.append(own or Attendee(me, "", "ACCEPTED", "CHAIR", False))
    for address in addresses:
        result.append(known.get(address) or Attendee(address))
    return result


def _form_context(values, errors, *, heading, action, event=None, recurring=False) -> dict[str, Any]:
    reminder_options = sorted(set(REMINDER_CHOICES) | set(values["rappels"]))
    return {
        "nav": "agenda",
        "heading": heading,
        "action": action,
        "form": values,
        "errors": errors,
        "repetitions": REPETITIONS,
        "reminder_options": [(m, reminder_label(m)) for m in reminder_options],
        "event": event,
        "recurring": recurring,
        "freebusy_url": "/agenda/disponibilites?"
        + urllib.parse.urlencode(
            {"participants": " ".join(_split_addresses(values["participants"])), "date": values["date_debut"]}
        ),
    }


@login_required
async def new_event_page(request: web.Request) -> web.Response:
    start = _parse_local(request.query.get("debut", "")) or dt.datetime.combine(today(), dt.time(9))
    end = _parse_local(request.query.get("fin", "")) or start + dt.timedelta(hours=1)
    if end <= start:
        end = start + dt.timedelta(hours=1)
    participants = "\n".join(_split_addresses(request.query.get("participants", "")[:5000]))
    values = _blank_form(start, end, participants)
    context = _form_context(values, {}, heading="Nouvel événement", action="/agenda/nouveau")
    return await render(request, "agenda/form.html", context)


def _parse_local(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is not None:
        moment = moment.astimezone(PARIS).replace(tzinfo=None)
    return moment


@login_required
async def new_event_submit(request: web.Request) -> web.Response:
    me = _me(request)
    values = _form_values(await request.post())
    fields, errors = parse_event_form(values, me)
    context = _form_context(values, errors, heading="Nouvel événement", action="/agenda/nouveau")
    if errors:
        return await render(request, "agenda/form.html", context, status=400)
    data = EventInput(
        summary=fields["summary"],
        start=fields["start"],
        end=fields["end"],
        location=fields["location"],
        description=fields["description"],
        rrule=fields["rrule"],
        attendees=_attendees(fields["attendees"], (), me),
        reminders=fields["reminders"],
        transparent=fields["transparent"],
    )
    try:
        stored = await run_sync(_store(request).create, me, data)
    except AgendaError as exc:
        context["error"] = exc.message
        context["problems"] = exc.problems
        return await render(request, "agenda/form.html", context, status=400)
    session = get_session(request)
    warning = await _invite(request, stored)
    if warning:
        flash(session, "warning", warning)
    elif len(stored.attendees) > 1:
        flash(session, "success", f"Événement « {stored.summary} » créé ; invitations envoyées.")
    else:
        flash(session, "success", f"Événement « {stored.summary} » créé.")
    raise web.HTTPSeeOther(event_url(stored.id))


# --- one event ----------------------------------------------------------------------------------------


async def _event_or_404(request: web.Request) -> tuple[StoredEvent, Any, dt.datetime | dt.date | None]:
    """(stored document, its component, the occurrence asked for) of the user's event; 404 otherwise."""
    store, me = _store(request), _me(request)
    rid = parse_occurrence(request.query.get("occurrence", ""))
    try:
        stored = await run_sync(store.get, me, request.match_info["event_id"])
        component = parse_component(stored.ical)
    except EventNotFound as exc:
        raise web.HTTPNotFound() from exc
    if stored.kind == "override":
        rid = component["RECURRENCE-ID"].dt
    elif not stored.recurring:
        rid = None
    return stored, component, rid


def _times(stored: StoredEvent, component, rid) -> tuple[Any, Any]:
    """Start and end of the occurrence shown (the master's first one without `rid`)."""
    start, end = component.start, component.end
    if rid is None or stored.kind == "override":
        return start, end
    if isinstance(rid, dt.datetime) and isinstance(start, dt.datetime):
        rid = _local(rid)
        return rid, rid + (end - start)
    if not isinstance(rid, dt.datetime) and not isinstance(start, dt.datetime):
        return rid, rid + (end - start)
    return start, end


@login_required
async def event_page(request: web.Request) -> web.Response:
    await apply_pending_replies(request)  # the organiser looks at the answers: show the latest
    stored, component, rid = await _event_or_404(request)
    me = _me(request)
    start, end = _times(stored, component, rid)
    series = stored.recurring or stored.kind == "override"
    organizer = stored.organizer
    own = next((a for a in stored.attendees if a.address == me), None)
    start_local = _local(start)
    start_day = start_local.date() if isinstance(start_local, dt.datetime) else start_local
    context = {
        "nav": "agenda",
        "event": stored,
        "summary": stored.summary or "(sans titre)",
        "when": when_label(start, end),
        "location": str(component.get("LOCATION", "")),
        "description": str(component.get("DESCRIPTION", "")),
        "rule": component.get("RRULE").to_ical().decode() if component.get("RRULE") is not None else "",
        "series": series,
        "occurrence": occurrence_param(rid) if series else "",
        "attendees": attendee_rows(stored.attendees, organizer),
        "organizer": organizer,
        "is_organizer": not organizer or organizer == me,
        "own_answer": own.partstat if own and organizer and organizer != me else "",
        "own_label": PARTSTAT_LABELS.get(own.partstat, "") if own else "",
        "answers": ANSWER_BUTTONS,
        "reminders": [reminder_label(m) for m in stored.reminders],
        "external": stored.external,
        "cancelled": stored.status == "CANCELLED",
        "edit_url": event_url(stored.id, rid if series else None, "/modifier"),
        "move_date": start_day.isoformat(),
        "move_time": f"{start_local:%H:%M}" if isinstance(start_local, dt.datetime) else "",
        "all_day": not isinstance(start, dt.datetime),
        "back_url": f"/agenda/semaine?date={start_day.isoformat()}",
    }
    return await render(request, "agenda/event.html", context)


def _scope(values: dict[str, Any], series: bool) -> str:
    if not series:
        return Scope.SERIES
    return SCOPES.get(values.get("portee", "serie"), Scope.SERIES)


def _series_shift(component, rid, new_start, new_end):
    """For a change of the whole series made from one occurrence: the master's new start and end, moved
    by as much as the occurrence was (wall-clock), so that the series does not jump to that date."""
    start, end = component.start, component.end
    if rid is None or new_start is None:
        return new_start, new_end
    if isinstance(start, dt.datetime) != isinstance(new_start, dt.datetime):
        return new_start, new_end
    occurrence_start = _local(rid).replace(tzinfo=None) if isinstance(rid, dt.datetime) else rid
    wall = _local(start).replace(tzinfo=None) if isinstance(start, dt.datetime) else start
    delta = new_start - occurrence_start
    length = (new_end - new_start) if new_end is not None else (end - start)
    master_start = wall + delta
    return master_start, master_start + length


async def _master_component(request: web.Request, stored: StoredEvent, component):
    """The VEVENT of the series' master (the component itself for a master)."""
    if stored.kind == "master":
        return component
    try:
        return await run_sync(_store(request).component, _me(request), stored.series_id)
    except EventNotFound:
        return component


@login_required
async def edit_page(request: web.Request) -> web.Response:
    stored, component, rid = await _event_or_404(request)
    start, end = _times(stored, component, rid)
    series = stored.recurring or stored.kind == "override"
    values = _form_of_event(component, start, end, occurrence_param(rid) if series else "")
    context = _form_context(
        values,
        {},
        heading=f"Modifier « {stored.summary or '(sans titre)'} »",
        action=event_url(stored.id, suffix="/modifier"),
        event=stored,
        recurring=series,
    )
    return await render(request, "agenda/form.html", context)


@login_required
async def edit_submit(request: web.Request) -> web.Response:
    store, me = _store(request), _me(request)
    try:
        stored = await run_sync(store.get, me, request.match_info["event_id"])
    except EventNotFound as exc:
        raise web.HTTPNotFound() from exc
    component = parse_component(stored.ical)
    values = _form_values(await request.post())
    series = stored.recurring or stored.kind == "override"
    rid = parse_occurrence(values["occurrence"]) if series else None
    if stored.kind == "override":
        rid = component["RECURRENCE-ID"].dt
    scope = _scope(values, series)
    fields, errors = parse_event_form(values, me)
    context = _form_context(
        values,
        errors,
        heading=f"Modifier « {stored.summary or '(sans titre)'} »",
        action=event_url(stored.id, suffix="/modifier"),
        event=stored,
        recurring=series,
    )
    if errors:
        return await render(request, "agenda/form.html", context, status=400)
    changes: dict[str, Any] = {
        "summary": fields["summary"],
        "location": fields["location"],
        "description": fields["description"],
        "attendees": _attendees(fields["attendees"], stored.attendees, me),
        "reminders": fields["reminders"],
        "transparent": fields["transparent"],
    }
    start, end = fields["start"], fields["end"]
    target = stored.id
    if scope == Scope.SERIES and series:
        # Edited from one occurrence, applied to all: the series moves by as much as that occurrence.
        target = stored.series_id
        master = await _master_component(request, stored, component)
        start, end = _series_shift(master, rid, start, end)
    changes["start"], changes["end"] = start, end
    if scope != Scope.OCCURRENCE:
        master = await _master_component(request, stored, component)
        old_rule = master.get("RRULE")
        old = old_rule.to_ical().decode() if old_rule is not None else ""
        if _rule_choice(old) != _rule_choice(fields["rrule"] or ""):
            changes["rrule"] = fields["rrule"]
    if stored.organizer and stored.organizer != me:
        # An invitation: only one's own copy's reminders and transparency are one's own to change.
        changes = {k: changes[k] for k in ("reminders", "transparent")}
    try:
        updated = await run_sync(store.update, me, target, changes, scope, rid)
        updated = await _ensure_organizer(request, updated)
    except AgendaError as exc:
        context["error"] = exc.message
        context["problems"] = exc.problems
        return await render(request, "agenda/form.html", context, status=400)
    session = get_session(request)
    warnings = [await _invite(request, updated, "invitation mise à jour")]
    if scope == Scope.FOLLOWING and updated.series_id != stored.series_id:
        with contextlib.suppress(EventNotFound):
            head = await run_sync(store.get, me, stored.series_id)
            warnings.append(await _invite(request, head, "invitation mise à jour"))
    warning = " ".join(w for w in warnings if w)
    flash(session, "warning" if warning else "success", warning or "Événement modifié.")
    shown = updated.recurrence_id if updated.kind == "override" else None
    raise web.HTTPSeeOther(event_url(updated.id, shown))


class _Target(NamedTuple):
    """The event a move or a deletion form names, and which of its occurrences it applies to."""

    stored: StoredEvent
    form: Any
    component: Any
    series: bool  # part of a recurring series (its master or an override)
    rid: Any  # the occurrence's RECURRENCE-ID (a date or datetime), None for the whole event
    scope: Scope


async def _target(request: web.Request) -> _Target:
    """Read the event named in the URL (404 unless it is the user's) and the form's occurrence and scope."""
    try:
        stored = await run_sync(_store(request).get, _me(request), request.match_info["event_id"])
    except EventNotFound as exc:
        raise web.HTTPNotFound() from exc
    form = await request.post()
    component = parse_component(stored.ical)
    series = stored.recurring or stored.kind == "override"
    rid = parse_occurrence(str(form.get("occurrence", ""))) if series else None
    if stored.kind == "override":
        rid = component["RECURRENCE-ID"].dt
    scope = _scope({"portee": str(form.get("portee", "serie"))}, series)
    return _Target(stored, form, component, series, rid, scope)


@login_required
async def move_submit(request: web.Request) -> web.Response:
    store, me = _store(request), _me(request)
    stored, form, component, series, rid, scope = await _target(request)
    session = get_session(request)
    back = event_url(stored.id, rid if series else None)
    day = _date(str(form.get("date", "")))
    when = _time(str(form.get("heure", "")))
    all_day = not isinstance(component.start, dt.datetime)
    if day is None or (when is None and not all_day):
        flash(session, "error", "Nouvelle date ou heure invalide : l'événement n'a pas été déplacé.")
        raise web.HTTPSeeOther(back)
    if stored.organizer and stored.organizer != me:
        flash(session, "error", "Seul l'organisateur peut déplacer une réunion à laquelle vous êtes invité.")
        raise web.HTTPSeeOther(back)
    start: dt.datetime | dt.date = day if all_day else dt.datetime.combine(day, when)
    occurrence_start, occurrence_end = _times(stored, component, rid)
    length = occurrence_end - occurrence_start
    end = start + length
    target = stored.id
    if scope == Scope.SERIES and series:
        target = stored.series_id
        master = await _master_component(request, stored, component)
        start, end = _series_shift(master, rid, start, end)
    try:
        moved = await run_sync(store.move, me, target, start, end, scope, rid)
    except AgendaError as exc:
        flash(session, "error", exc.message)
        raise web.HTTPSeeOther(back) from None
    warning = await _invite(request, moved, "invitation mise à jour")
    flash(session, "warning" if warning else "success", warning or "Événement déplacé.")
    raise web.HTTPSeeOther(event_url(moved.id, moved.recurrence_id if moved.kind == "override" else None))


@login_required
async def delete_submit(request: web.Request) -> web.Response:
    store, me = _store(request), _me(request)
    stored, _form, component, _series, rid, scope = await _target(request)
    session = get_session(request)
    organised = bool(stored.attendees) and (not stored.organizer or stored.organizer == me)
    warning = ""
    if organised and scope == Scope.SERIES:
        # Tell the attendees before the event is gone (the cancellation is built from it).
        try:
            message = await run_sync(itip.build_cancel, store, me, stored.series_id, _name(request))
        except (ItipError, EventNotFound):
            message = None
        if message is not None:
            problem = await _send(request, message)
            if problem:
                warning = f"L'annulation n'a pas pu être envoyée aux participants : {problem}"
    try:
        target = stored.series_id if scope == Scope.SERIES else stored.id
        await run_sync(store.delete, me, target, scope, rid)
    except EventNotFound:
        pass  # already gone: what was asked is done
    except AgendaError as exc:
        flash(session, "error", exc.message)
        raise web.HTTPSeeOther(event_url(stored.id, rid)) from None
    if organised and scope != Scope.SERIES:
        with contextlib.suppress(EventNotFound):
            master = await run_sync(store.get, me, stored.series_id)
            warning = await _invite(request, master, "invitation mise à jour")
    labels = {
        Scope.SERIES: "Événement supprimé.",
        Scope.OCCURRENCE: "Occurrence supprimée.",
        Scope.FOLLOWING: "Occurrence et suivantes supprimées.",
    }
    flash(session, "warning" if warning else "success", warning or labels[scope])
    start, _ = _times(stored, component, rid)
    start = _local(start)
    day = start.date() if isinstance(start, dt.datetime) else start
    raise web.HTTPSeeOther(f"/agenda/semaine?date={day.isoformat()}")


@login_required
async def answer_submit(request: web.Request) -> web.Response:
    """One's own answer to an invitation already in the calendar (then the reply mail to the organiser)."""
    store, me = _store(request), _me(request)
    try:
        stored = await run_sync(store.get, me, request.match_info["event_id"])
    except EventNotFound as exc:
        raise web.HTTPNotFound() from exc
    form = await request.post()
    partstat = str(form.get("reponse", "")).upper()
    session = get_session(request)
    back = event_url(stored.id)
    if not stored.organizer or stored.organizer == me:
        flash(session, "error", "Vous êtes l'organisateur de cet événement.")
        raise web.HTTPSeeOther(back)
    try:
        master = await run_sync(store.get, me, stored.series_id)
        await run_sync(itip.answer_invitation, store, me, master.id, partstat)
        components = [parse_component(e.ical) for e in await run_sync(store.series, me, master.id)]
        invitation = itip.ItipMessage(
            method="REQUEST",
            uid=master.uid,
            sequence=master.sequence,
            organizer=master.organizer,
            sender=master.organizer,
            summary=master.summary,
            attendees=master.attendees,
            recurrence_ids=(),
            components=components,
        )
        reply = itip.build_reply(invitation, me, partstat)
    except AgendaError as exc:
        flash(session, "error", exc.message)
        raise web.HTTPSeeOther(back) from None
    problem = await _send(request, reply)
    label = PARTSTAT_LABELS.get(partstat, partstat)
    if problem:
        flash(
            session,
            "warning",
            f"Réponse « {label} » enregistrée, mais non envoyée à l'organisateur : {problem}",
        )
    else:
        flash(session, "success", f"Réponse « {label} » envoyée à l'organisateur.")
    raise web.HTTPSeeOther(back)


# --- free/busy ----------------------------------------------------------------------------------------


@login_required
async def freebusy_page(request: web.Request) -> web.Response:
    me = _me(request)
    settings = request.app[SETTINGS]
    raw = request.query.get("participants", "")[:5000]
    day = _date(request.query.get("date"), None)
    errors = {}
    if request.query.get("date") and day is None:
        errors["date"] = "Date invalide."
    day = day or today()
    try:
        minutes = int(request.query.get("duree", "60"))
    except ValueError:
        minutes = 60
    minutes = minutes if minutes in DURATIONS else 60
    academic, outside, wrong = [], [], []
    for part in _split_addresses(raw):
        address = normalise_address(part)
        if not ADDRESS.match(address):
            wrong.append(part)
        elif not itip.is_academic(address, settings.mail_domain):
            outside.append(address)
        elif address not in academic and address != me:
            academic.append(address)
    if wrong:
        errors["participants"] = "Adresse(s) invalide(s) : " + ", ".join(wrong[:10]) + "."
    if len(academic) > freebusy.MAX_PEOPLE - 1:
        errors["participants"] = f"Trop de personnes à la fois (au plus {freebusy.MAX_PEOPLE - 1})."
        academic = academic[: freebusy.MAX_PEOPLE - 1]
    start = dt.datetime.combine(day, dt.time(DAY_START), PARIS)
    end = dt.datetime.combine(day, dt.time(DAY_END), PARIS)
    people = [me, *academic]
    busy = await run_sync(freebusy.busy_periods, _store(request), people, start, end, DEFAULT_TZ)
    slots = freebusy.free_slots(busy, start, end, dt.timedelta(minutes=minutes))
    participants = " ".join(academic + outside)
    slot_rows = []
    for slot_start, slot_end in slots:
        cursor = slot_start
        # Offer each possible start on the half hour within the free interval (at most 8 per interval).
        offered = 0
        while cursor + dt.timedelta(minutes=minutes) <= slot_end and offered < 8:
            finish = cursor + dt.timedelta(minutes=minutes)
            slot_rows.append(
                {
                    "label": f"{cursor:%H:%M} – {finish:%H:%M}",
                    "url": "/agenda/nouveau?"
                    + urllib.parse.urlencode(
                        {
                            "debut": cursor.replace(tzinfo=None).isoformat(timespec="minutes"),
                            "fin": finish.replace(tzinfo=None).isoformat(timespec="minutes"),
                            "participants": participants,
                        }
                    ),
                }
            )
            offered += 1
            cursor += dt.timedelta(minutes=30)
    rows = [
        {
            "address": person,
            "me": person == me,
            "busy": [f"{a:%H:%M} – {b:%H:%M}" for a, b in busy.get(person, [])],
        }
        for person in people
    ]
    context = {
        "nav": "agenda",
        "participants": "\n".join(_split_addresses(raw)),
        "day": day.isoformat(),
        "day_label": french.day(day),
        "minutes": minutes,
        "durations": DURATIONS,
        "rows": rows,
        "outside": outside,
        "slots": slot_rows,
        "errors": errors,
        "hours": f"{DAY_START} h – {DAY_END} h",
        "previous_url": "/agenda/disponibilites?"
        + urllib.parse.urlencode(
            {"participants": participants, "date": (day - dt.timedelta(days=1)).isoformat(), "duree": minutes}
        ),
        "next_url": "/agenda/disponibilites?"
        + urllib.parse.urlencode(
            {"participants": participants, "date": (day + dt.timedelta(days=1)).isoformat(), "duree": minutes}
        ),
    }
    return await render(request, "agenda/freebusy.html", context, status=400 if errors else 200)


# --- .ics files ---------------------------------------------------------------------------------------


@login_required
async def export_ics(request: web.Request) -> web.Response:
    data = await run_sync(ics.export_calendar, _store(request), _me(request), "Agenda")
    return web.Response(
        body=data,
        headers={
            "Content-Type": "text/calendar; charset=utf-8",
            "Content-Disposition": 'attachment; filename="agenda.ics"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "no-store",
        },
    )


@login_required
async def import_page(request: web.Request) -> web.Response:
    return await render(request, "agenda/import.html", {"nav": "agenda", "error": "", "problems": []})


@login_required
async def import_submit(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form.get("fichier")
    context: dict[str, Any] = {"nav": "agenda", "error": "", "problems": []}
    if not isinstance(upload, web.FileField) or not upload.filename:
        context["error"] = "Choisissez un fichier .ics à importer."
        return await render(request, "agenda/import.html", context, status=400)
    data = upload.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        context["error"] = "Fichier trop volumineux : 5 Mo au plus. Rien n'a été importé."
        return await render(request, "agenda/import.html", context, status=400)
    try:
        report = await run_sync(ics.import_calendar, _store(request), _me(request), data)
    except CalendarImportError as exc:
        context["error"] = exc.message + " Rien n'a été importé."
        context["problems"] = exc.problems
        return await render(request, "agenda/import.html", context, status=400)
    except AgendaError as exc:
        context["error"] = exc.message
        return await render(request, "agenda/import.html", context, status=400)
    message = (
        f"Import terminé : {report.created} événement(s) ajouté(s), {report.updated} mis à jour, "
        f"{report.unchanged} inchangé(s)."
    )
    if report.notes:
        message += " " + " ".join(report.notes[:5])
    flash(get_session(request), "success", message)
    raise web.HTTPSeeOther("/agenda/semaine")


# --- invitations in the reader ------------------------------------------------------------------------


def looks_like_itip(entry: dict[str, Any], raw: bytes) -> bool:
    """Cheap test before parsing: an `.ics` attachment or a text/calendar part."""
    for attachment in entry.get("attachments") or []:
        name = str(attachment.get("filename", "")).lower()
        if name.endswith(".ics") or attachment.get("content_type") in ("text/calendar", "application/ics"):
            return True
    return b"text/calendar" in raw[:2_000_000].lower()


def _processed(db, owner: str, entry_id: str) -> dict[str, Any] | None:
    doc = db[PROCESSED].find_one({"_id": entry_id})
    return doc if doc is not None and doc.get("owner") == owner else None


def _mark(db, owner: str, entry_id: str, method: str, outcome: str, message: str) -> None:
    db[PROCESSED].replace_one(
        {"_id": entry_id},
        {
            "_id": entry_id,
            "owner": owner,
            "method": method,
            "outcome": outcome,
            "message": message,
            "at": dt.datetime.now(dt.UTC),
        },
        upsert=True,
    )


def apply_reply_entry(
    store: AgendaStore, db, owner: str, entry_id: str, message: itip.ItipMessage, allow_external: bool = False
) -> tuple[str, str]:
    """Apply a REPLY found in `owner`'s mailbox once: (outcome, French message). An outside reply without
    consent is left pending (not marked), so the organiser can still confirm it."""
    done = _processed(db, owner, entry_id)
    if done is not None:
        return done["outcome"], done["message"]
    attendee = message.attendees[0] if message.attendees else None
    try:
        itip.apply_reply(store, owner, message, allow_external=allow_external)
    except ExternalItip as exc:
        return "external", exc.message
    except AgendaError as exc:
        _mark(db, owner, entry_id, message.method, "refused", exc.message)
        return "refused", exc.message
    label = PARTSTAT_LABELS.get(attendee.partstat if attendee else "", "")
    who = attendee.address if attendee else message.sender
    text = f"Réponse de {who} (« {label} ») enregistrée dans votre agenda."
    _mark(db, owner, entry_id, message.method, "applied", text)
    return "applied", text


def _pending_replies(db, owner: str, mail_domain: str) -> int:
    """Apply the invitation replies waiting in `owner`'s inbox; how many were applied."""
    store = AgendaStore(db)
    box = Mailbox(db, owner)
    # Read-only, confined to the owner's inbox (docs/agenda.md, "Where replies are applied"): the entries
    # received since the last look, newest first, along the inbox's `folder_by_date` index.
    started = utcnow()
    looked = db[PENDING_LOOKED].find_one({"_id": owner}) or {}
    since = looked["until"] - PENDING_OVERLAP if looked.get("until") else started - PENDING_FIRST_LOOK
    recent = indexed_find(
        db.mailbox_entries,
        {"mailbox": owner, "folder": INBOX, "received_at": {"$gte": since}},
        {"attachments.filename": 1},
        sort=[("received_at", -1), ("_id", -1)],
        limit=PENDING_LIMIT,
    )
    ids = [
        entry["_id"]
        for entry in recent
        if any(a.get("filename") == "invitation.ics" for a in entry.get("attachments") or [])
    ]
    applied = _apply_pending(db, store, box, owner, ids, mail_domain) if ids else 0
    # Only once every candidate was handled: after a failure the next look goes through them again.
    db[PENDING_LOOKED].replace_one({"_id": owner}, {"_id": owner, "until": started}, upsert=True)
    return applied


def _apply_pending(db, store: AgendaStore, box: Mailbox, owner: str, ids: list[str], mail_domain: str) -> int:
    """Apply the REPLY among the entries `ids` not processed yet; how many were applied."""
    done = {d["_id"] for d in indexed_find(db[PROCESSED], {"_id": {"$in": ids}}, {"_id": 1})}
    applied = 0
    for entry_id in ids:
        if entry_id in done:
            continue
        entry = box.entry(entry_id)
        if entry is None:
            continue
        try:
            message = itip.parse_imip(box.raw(entry), mail_domain)
        except ItipError as exc:
            _mark(db, owner, entry_id, "", "refused", exc.message)
            continue
        except BlobNotFound:
            continue
        if message.method != "REPLY":
            _mark(db, owner, entry_id, message.method, "seen", "")
            continue
        outcome, _ = apply_reply_entry(store, db, owner, entry_id, message)
        applied += outcome == "applied"
    return applied


async def apply_pending_replies(request: web.Request) -> None:
    """Called by every calendar page: the organiser sees answers without opening each reply."""
    try:
        applied = await run_sync(
            _pending_replies, request.app[DATABASE], _me(request), request.app[SETTINGS].mail_domain
        )
    except Exception:  # the calendar must still show; the replies are applied next time
        log.exception("cannot apply pending invitation replies")
        return
    if applied:
        log.info("invitation replies applied", extra={"account": _me(request), "count": applied})


async def invitation_panel(request: web.Request, box: Mailbox, entry: dict[str, Any], raw: bytes | None):
    """What the reader shows about an invitation, a reply or a cancellation (None for other mail).

    A REPLY from the academy is applied to the organiser's calendar right away (once)."""
    if raw is None or not looks_like_itip(entry, raw):
        return None
    settings = request.app[SETTINGS]
    db = request.app[DATABASE]
    me = _me(request)
    store = _store(request)
    try:
        message = await run_sync(itip.parse_imip, raw, settings.mail_domain)
    except ItipError as exc:
        return {"error": exc.message}
    except Exception:
        log.exception("cannot read an invitation", extra={"entry_id": entry["_id"]})
        return {"error": "Invitation illisible."}
    first = message.components[0]
    try:
        when = itip.french_when(first)
    except Exception:  # noqa: BLE001
        when = ""
    panel: dict[str, Any] = {
        "error": "",
        "method": message.method,
        "summary": message.summary or "(sans titre)",
        "organizer": message.organizer,
        "sender": message.sender,
        "external": message.external,
        "when": when,
        "recurring": first.get("RRULE") is not None,
        "location": str(first.get("LOCATION", "")),
        "action": f"/agenda/invitation/{urllib.parse.quote(entry['_id'], safe='')}",
        "answers": ANSWER_BUTTONS,
        "status": "",
        "outcome": "",
        "own_answer": "",
        "event_url": "",
        "invited": me in {a.address for a in message.attendees},
    }
    if message.method == "REPLY":
        outcome, text = await run_sync(apply_reply_entry, store, db, me, entry["_id"], message)
        panel["outcome"], panel["status"] = outcome, text
        attendee = message.attendees[0]
        panel["reply_from"] = attendee.address
        panel["reply_label"] = PARTSTAT_LABELS.get(attendee.partstat, attendee.partstat)
    existing = await run_sync(store.find_uid, me, message.uid)
    master = next((e for e in existing if e.kind == "master"), None)
    if master is not None:
        panel["event_url"] = event_url(master.id)
        own = next((a for a in master.attendees if a.address == me), None)
        if message.method == "REQUEST" and own is not None and master.sequence >= message.sequence:
            panel["own_answer"] = (
                PARTSTAT_LABELS.get(own.partstat, "") if own.partstat != "NEEDS-ACTION" else ""
            )
        if message.method == "CANCEL" and master.status == "CANCELLED":
            panel["status"] = "Cet événement est marqué comme annulé dans votre agenda."
            panel["outcome"] = "applied"
    return panel


@login_required
async def invitation_submit(request: web.Request) -> web.Response:
    """The reader's buttons: answer an invitation, apply a cancellation, confirm an outside reply."""
    db = request.app[DATABASE]
    settings = request.app[SETTINGS]
    me = _me(request)
    box = Mailbox(db, me)
    entry_id = request.match_info["entry_id"]
    entry = await run_sync(box.entry, entry_id)
    if entry is None:
        raise web.HTTPNotFound()
    back = f"/courrier/{urllib.parse.quote(entry.get('folder', INBOX), safe='')}/{entry['_id']}"
    form = await request.post()
    session = get_session(request)
    confirm = form.get("confirmer_externe") == "1"
    store = _store(request)
    try:
        raw = await run_sync(box.raw, entry)
        message = await run_sync(itip.parse_imip, raw, settings.mail_domain)
    except (BlobNotFound, ItipError) as exc:
        flash(session, "error", getattr(exc, "message", "Invitation illisible."))
        raise web.HTTPSeeOther(back) from None
    try:
        if message.method == "REQUEST":
            partstat = str(form.get("reponse", "")).upper()
            if partstat not in itip.ANSWERS:
                raise ItipError("Réponse inconnue : choisissez Accepter, Peut-être ou Refuser.")
            stored = await run_sync(itip.receive_request, store, me, message, confirm)
            master = next(s for s in stored if s.kind == "master") if stored else None
            if master is None:
                raise ItipError("Cette invitation ne contient pas l'événement lui-même.")
            await run_sync(itip.answer_invitation, store, me, master.id, partstat)
            reply = itip.build_reply(message, me, partstat)
            problem = await _send(request, reply)
            label = PARTSTAT_LABELS[partstat]
            if problem:
                flash(
                    session,
                    "warning",
                    f"Réponse « {label} » enregistrée dans votre agenda, mais non envoyée : {problem}",
                )
            else:
                flash(
                    session,
                    "success",
                    f"Réponse « {label} » envoyée à {message.organizer} ; votre agenda est à jour.",
                )
        elif message.method == "CANCEL":
            await run_sync(itip.apply_cancel, store, me, message, confirm)
            flash(session, "success", "L'événement est marqué comme annulé dans votre agenda.")
        else:
            outcome, text = await run_sync(apply_reply_entry, store, db, me, entry_id, message, confirm)
            flash(session, "success" if outcome == "applied" else "error", text)
    except ExternalItip as exc:
        flash(session, "error", exc.message + " Cochez la case de confirmation pour l'accepter.")
    except AgendaError as exc:
        flash(session, "error", exc.message)
    raise web.HTTPSeeOther(back)


# --- reminders ----------------------------------------------------------------------------------------


def reminder_key(reminder) -> str:
    rid = occurrence_param(reminder.recurrence_id)
    text = (
        f"{reminder.owner}|{reminder.event_id}|{rid}|{reminder.minutes_before}|{reminder.start.isoformat()}"
    )
    return hashlib.sha256(text.encode()).hexdigest()


def reminder_message(settings: Settings, reminder) -> EmailMessage:
    """The French reminder mail of one due reminder, from the platform to the calendar's owner."""
    start = reminder.start.astimezone(PARIS)
    message = EmailMessage()
    message["From"] = settings.notify_sender
    message["To"] = reminder.owner
    message["Subject"] = f"Rappel : {reminder.summary or '(sans titre)'} – {start:%d/%m/%Y à %H:%M}"
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=settings.mail_domain)
    message["Auto-Submitted"] = "auto-generated"
    link = f"{settings.public_url.rstrip('/')}{event_url(reminder.event_id, reminder.recurrence_id)}"
    message.set_content(
        "\n".join(
            [
                f"Rappel de votre agenda : « {reminder.summary or '(sans titre)'} »",
                f"Début : {french.day(start)} à {start:%H:%M} "
                f"({reminder_label(reminder.minutes_before).lower()}).",
                "",
                f"Voir l'événement : {link}",
                "",
                "Ce message est envoyé automatiquement par le webmail académique ; n'y répondez pas.",
            ]
        )
    )
    return message


def send_via_mx(settings: Settings, message: EmailMessage, recipient: str) -> None:
    """The platform's own mail to an academy address, through the MX (like notify): null reverse path."""
    host, port = settings.mx_endpoint()
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.sendmail("", [recipient], message.as_bytes(policy=email.policy.SMTP))


class ReminderNotifier:
    """Sends due reminders by e-mail, each once across every webmail process (claim, then send)."""

    def __init__(
        self, db, settings: Settings, send: Callable[[Settings, EmailMessage, str], None] = send_via_mx
    ):
        self.db = db
        self.settings = settings
        self.store = AgendaStore(db)
        self.send = send
        self._purged_at: dt.datetime | None = None

    def purge_claims(self, now: dt.datetime) -> int:
        """Delete the claims older than REMINDER_CLAIMS_KEPT (no TTL index on FerretDB); how many."""
        self._purged_at = now
        return purge_expired(self.db, REMINDERS_SENT, "at", now - REMINDER_CLAIMS_KEPT)

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Send the reminders due in (now - lookback, now]; how many were sent."""
        now = now or dt.datetime.now(dt.UTC)
        if self._purged_at is None or now - self._purged_at >= REMINDER_PURGE_EVERY:
            self.purge_claims(now)
        due = self.store.due_reminders(now - REMINDER_LOOKBACK, now + dt.timedelta(seconds=1))
        sent = 0
        for reminder in due:
            key = reminder_key(reminder)
            try:
                self.db[REMINDERS_SENT].insert_one(
                    {"_id": key, "owner": reminder.owner, "event_id": reminder.event_id, "at": now}
                )
            except DuplicateKeyError:
                continue  # sent already (by this or another process)
            try:
                self.send(self.settings, reminder_message(self.settings, reminder), reminder.owner)
            except Exception:
                log.exception("reminder not sent; will retry", extra={"account": reminder.owner})
                self.db[REMINDERS_SENT].delete_one({"_id": key})
                continue
            sent += 1
        if sent:
            log.info("calendar reminders sent", extra={"count": sent})
        return sent


async def _remind_forever(app: web.Application) -> None:
    notifier: ReminderNotifier = app[REMINDERS]
    while True:
        try:
            await run_sync(notifier.run_once)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reminder round failed; will retry")
        await asyncio.sleep(REMINDER_POLL_SECONDS)


async def _reminders_ctx(app: web.Application):
    task = None
    # Only a real webmail process (one with a bus) sends reminders; unit tests call run_once themselves.
    if app[PUBLISHER] is not None:
        task = asyncio.create_task(_remind_forever(app))
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _start(app: web.Application) -> None:
    try:
        await run_sync(app[AGENDA].ensure_indexes)
    except Exception:  # an index is an optimisation: the pages work without it
        log.exception("cannot create the calendar indexes")


def setup(app: web.Application) -> None:
    """Add the calendar's routes and its reminder notifier."""
    app[AGENDA] = AgendaStore(app[DATABASE])
    app[REMINDERS] = ReminderNotifier(app[DATABASE], app[SETTINGS])
    app.on_startup.append(_start)
    app.cleanup_ctx.append(_reminders_ctx)
    app.router.add_get("/agenda", agenda_home)
    app.router.add_get("/agenda/nouveau", new_event_page)
    app.router.add_post("/agenda/nouveau", new_event_submit)
    app.router.add_get("/agenda/disponibilites", freebusy_page)
    app.router.add_get("/agenda/exporter", export_ics)
    app.router.add_get("/agenda/importer", import_page)
    app.router.add_post("/agenda/importer", import_submit)
    app.router.add_post("/agenda/invitation/{entry_id}", invitation_submit)
    app.router.add_get("/agenda/evenement/{event_id}", event_page)
    app.router.add_get("/agenda/evenement/{event_id}/modifier", edit_page)
    app.router.add_post("/agenda/evenement/{event_id}/modifier", edit_submit)
    app.router.add_post("/agenda/evenement/{event_id}/deplacer", move_submit)
    app.router.add_post("/agenda/evenement/{event_id}/supprimer", delete_submit)
    app.router.add_post("/agenda/evenement/{event_id}/repondre", answer_submit)
    app.router.add_get("/agenda/grille.css", grid_stylesheet)
    app.router.add_get("/agenda/{view}", calendar_page)


__all__ = ["invitation_panel", "setup"]
