"""Storage of calendar events: one document per series (or single event) and per overridden occurrence.

Collection `calendar_events`. A document holds the event's iCalendar component as text (`ical`: a VEVENT,
with RRULE/RDATE/EXDATE on a series master, RECURRENCE-ID on an override, VALARMs for reminders) and the
fields that queries need, derived from it on every write:

    _id          random hex (uuid4), allocated by the store
    owner        the account address whose calendar holds the event
    uid          the iCalendar UID (shared by a master and its overrides)
    series_id    the master's _id (its own _id for a master)
    kind         "master" or "override"
    recurrence   "" for a master, else the override's recurrence id (`model.recurrence_key`)
    recurrence_id  the override's original start (UTC), None for a master
    start, end   UTC instants of the event (for a master: its first occurrence)
    until        UTC end of the last occurrence; FAR_FUTURE for a rule without an end. For an override,
                 start..until spans both its original slot and its new one.
    tzid, all_day, recurring, summary, sequence, organizer, attendees [{address, name, partstat, role}],
    reminders [minutes before the start], has_alarms, transparent, status, external
    revision     incremented on every write; writes are conditional on it (optimistic locking)

Every read and write is scoped to the owner: a document is read by its `_id` alone (the only filter
FerretDB v1 pushes down to SQLite) and returned only if its `owner` is the caller, and every write filters
on `{"_id": id, "owner": owner, "revision": n}`; another user's id therefore gives EventNotFound. Range
queries filter on (owner, start, until), served by an index on MongoDB.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import icalendar
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from common.db import ensure_indexes, indexed_find, utcnow
from webmail.agenda import recurrence
from webmail.agenda.errors import (
    AgendaError,
    EditConflict,
    EventNotFound,
    InvalidEvent,
    OccurrenceNotFound,
)
from webmail.agenda.model import (
    CHANGEABLE,
    DEFAULT_TZ,
    MAX_ATTENDEES,
    MAX_REMINDER_MINUTES,
    MAX_REMINDERS,
    MAX_SUMMARY,
    MAX_TEXT,
    PARTSTATS,
    STATUSES,
    Attendee,
    DueReminder,
    EventInput,
    Occurrence,
    Scope,
    StoredEvent,
    localize,
    normalise_address,
    recurrence_key,
    to_utc,
    zone,
)

COLLECTION = "calendar_events"

INDEXES = {
    COLLECTION: [
        IndexModel([("owner", ASCENDING), ("start", ASCENDING)], name="owner_start"),
        IndexModel([("owner", ASCENDING), ("until", ASCENDING)], name="owner_until"),
        IndexModel(
            [("owner", ASCENDING), ("uid", ASCENDING), ("recurrence", ASCENDING)],
            unique=True,
            name="owner_uid",
        ),
        IndexModel([("owner", ASCENDING), ("series_id", ASCENDING)], name="owner_series"),
        IndexModel([("has_alarms", ASCENDING), ("until", ASCENDING)], name="alarms_until"),
    ],
}

MASTER, OVERRIDE = "master", "override"
#: Properties a master has and an occurrence override does not.
_SERIES_ONLY = ("RRULE", "RDATE", "EXDATE", "EXRULE")
#: Changes that are copied to overrides which had the master's old value.
_PROPAGATED = ("summary", "location", "description", "attendees", "reminders", "transparent", "status")


# --- components ------------------------------------------------------------------------------------


def parse_component(text: str) -> icalendar.Event:
    """The VEVENT stored as text (parsed from bytes: icalendar reads a one-line str naming a file)."""
    return icalendar.Event.from_ical(text.encode("utf-8") if isinstance(text, str) else text)


def copy_component(component: icalendar.Event) -> icalendar.Event:
    """A deep copy of a component."""
    return icalendar.Event.from_ical(component.to_ical())


def _set(component: icalendar.Component, name: str, value: Any, parameters: Mapping | None = None) -> None:
    component.pop(name, None)
    if value is not None and value != "":
        component.add(name, value, parameters=dict(parameters) if parameters else None)


def _text(component: icalendar.Component, name: str) -> str:
    value = component.get(name)
    return str(value) if value is not None else ""


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def attendees_of(component: icalendar.Event) -> tuple[Attendee, ...]:
    """The ATTENDEE properties as Attendee values."""
    result = []
    for prop in _as_list(component.get("ATTENDEE")):
        params = getattr(prop, "params", {})
        address = normalise_address(prop)
        if not address:
            continue
        result.append(
            Attendee(
                address=address,
                name=str(params.get("CN", "")),
                partstat=str(params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
                role=str(params.get("ROLE", "REQ-PARTICIPANT")).upper(),
                rsvp=str(params.get("RSVP", "FALSE")).upper() == "TRUE",
            )
        )
    return tuple(result)


def set_attendees(component: icalendar.Event, attendees: Iterable[Attendee]) -> None:
    """Replace the ATTENDEE properties."""
    component.pop("ATTENDEE", None)
    for attendee in attendees:
        address = normalise_address(attendee.address)
        if "@" not in address:
            raise InvalidEvent(f"Adresse de participant invalide : « {attendee.address} ».")
        partstat = attendee.partstat.upper()
        if partstat not in PARTSTATS:
            raise InvalidEvent(f"Réponse de participant inconnue : « {attendee.partstat} ».")
        prop = icalendar.vCalAddress(f"mailto:{address}")
        if attendee.name:
            prop.params["CN"] = attendee.name
        prop.params["PARTSTAT"] = partstat
        prop.params["ROLE"] = attendee.role.upper() or "REQ-PARTICIPANT"
        prop.params["RSVP"] = "TRUE" if attendee.rsvp else "FALSE"
        component.add("ATTENDEE", prop, encode=0)


def set_organizer(component: icalendar.Event, address: str, name: str = "") -> None:
    """Set ORGANIZER to `address`."""
    prop = icalendar.vCalAddress(f"mailto:{normalise_address(address)}")
    if name:
        prop.params["CN"] = name
    component.pop("ORGANIZER", None)
    component.add("ORGANIZER", prop, encode=0)


def reminders_of(component: icalendar.Event) -> tuple[int, ...]:
    """Minutes before the start of each VALARM with a trigger relative to the start."""
    minutes = []
    for alarm in component.walk("VALARM"):
        trigger = alarm.get("TRIGGER")
        value = getattr(trigger, "dt", None)
        if not isinstance(value, dt.timedelta):
            continue  # absolute triggers are kept in the component but not indexed
        if str(trigger.params.get("RELATED", "START")).upper() != "START":
            continue
        minutes.append(int(-value.total_seconds() // 60))
    return tuple(sorted(minutes))


def set_reminders(component: icalendar.Event, minutes: Iterable[int]) -> None:
    """Replace the VALARMs by display alarms `minutes` before the start."""
    values = sorted({int(m) for m in minutes})
    if len(values) > MAX_REMINDERS:
        raise InvalidEvent(f"Au plus {MAX_REMINDERS} rappels par événement.")
    if any(not 0 <= m <= MAX_REMINDER_MINUTES for m in values):
        raise InvalidEvent("Un rappel doit être entre 0 minute et 4 semaines avant le début.")
    component.subcomponents = [c for c in component.subcomponents if c.name != "VALARM"]
    for value in values:
        alarm = icalendar.Alarm()
        alarm.add("ACTION", "DISPLAY")
        alarm.add("DESCRIPTION", "Rappel")
        alarm.add("TRIGGER", dt.timedelta(minutes=-value))
        component.add_component(alarm)


def _wall(value: dt.datetime | dt.date) -> dt.datetime | dt.date:
    return value.replace(tzinfo=None) if isinstance(value, dt.datetime) else value


def _shift(value: dt.datetime | dt.date, delta: dt.timedelta) -> dt.datetime | dt.date:
    """`value` moved by `delta` of wall-clock time in its own time zone."""
    if isinstance(value, dt.datetime):
        return (value.replace(tzinfo=None) + delta).replace(tzinfo=value.tzinfo)
    return value + dt.timedelta(days=delta.days)


_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def _day(value: dt.datetime | dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _shift_weekdays(component: icalendar.Event, days: int) -> None:
    """Move the BYDAY weekdays of the rule by `days`, so that a series moved to another day keeps
    following its first occurrence (a Monday meeting moved to Wednesday repeats on Wednesdays)."""
    rules = component.rrules
    if not any(rule.get("BYDAY") for rule in rules):
        return
    component.pop("RRULE", None)
    for rule in rules:
        if rule.get("BYDAY"):
            shifted = []
            for token in rule["BYDAY"]:
                token = str(token).upper()
                prefix, day = token[:-2], token[-2:]
                shifted.append(
                    prefix + _WEEKDAYS[(_WEEKDAYS.index(day) + days) % 7] if day in _WEEKDAYS else token
                )
            rule["BYDAY"] = shifted
        component.add("RRULE", rule)


def _coerce_time(value: Any, tz) -> dt.datetime | dt.date:
    if isinstance(value, dt.datetime):
        return localize(value, tz).replace(second=value.second, microsecond=0)
    if isinstance(value, dt.date):
        return value
    raise InvalidEvent("Date ou heure invalide.")


def apply_changes(
    component: icalendar.Event, changes: Mapping[str, Any], default_tz: str = DEFAULT_TZ
) -> None:
    """Apply user changes (keys of `model.CHANGEABLE`) to a component, in place."""
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise InvalidEvent(f"Champ non modifiable : {', '.join(sorted(unknown))}.")
    tz = zone(changes["tz"]) if changes.get("tz") else recurrence.component_tz(component, default_tz)
    if "summary" in changes:
        summary = str(changes["summary"] or "").strip()
        if len(summary) > MAX_SUMMARY:
            raise InvalidEvent(f"Le titre est trop long (au plus {MAX_SUMMARY} caractères).")
        _set(component, "SUMMARY", summary or "(sans titre)")
    for key in ("location", "description"):
        if key in changes:
            text = str(changes[key] or "")
            if len(text) > MAX_TEXT:
                raise InvalidEvent(f"Le champ {key} est trop long (au plus {MAX_TEXT} caractères).")
            _set(component, key.upper(), text)
    if "start" in changes or "end" in changes or "tz" in changes:
        old_start = component.get("DTSTART")
        old_length = recurrence.duration_of(component) if old_start is not None else None
        start = changes.get("start")
        if start is None:
            if old_start is None:
                raise InvalidEvent("Le début de l'événement est obligatoire.")
            start = component.start
            if isinstance(start, dt.datetime):
                start = start.astimezone(tz) if start.tzinfo else start.replace(tzinfo=tz)
        start = _coerce_time(start, tz)
        end = changes.get("end")
        if end is None:
            if "end" not in changes and old_length is not None and type(component.start) is type(start):
                end = start + old_length if not isinstance(start, dt.datetime) else _shift(start, old_length)
            else:
                end = start + (
                    dt.timedelta(days=1) if not isinstance(start, dt.datetime) else dt.timedelta(hours=1)
                )
        end = _coerce_time(end, tz)
        if isinstance(start, dt.datetime) != isinstance(end, dt.datetime):
            raise InvalidEvent(
                "Le début et la fin doivent être tous deux des dates, ou tous deux des heures."
            )
        if end < start:
            raise InvalidEvent("La fin de l'événement précède son début.")
        _set(component, "DTSTART", start)
        component.pop("DURATION", None)
        _set(component, "DTEND", end)
    if "rrule" in changes:
        rule = changes["rrule"]
        component.pop("RRULE", None)
        if rule:
            text = str(rule).strip()
            if text.upper().startswith("RRULE:"):
                text = text[6:]
            try:
                component.add("RRULE", icalendar.vRecur.from_ical(text))
            except (ValueError, TypeError) as exc:
                raise InvalidEvent(f"Règle de répétition invalide : « {text} ».") from exc
        else:
            component.pop("EXDATE", None)
    if "attendees" in changes:
        attendees = list(changes["attendees"] or [])
        if len(attendees) > MAX_ATTENDEES:
            raise InvalidEvent(f"Trop de participants (au plus {MAX_ATTENDEES}).")
        set_attendees(component, attendees)
    if "reminders" in changes:
        set_reminders(component, changes["reminders"] or [])
    if "transparent" in changes:
        _set(component, "TRANSP", "TRANSPARENT" if changes["transparent"] else "OPAQUE")
    if "status" in changes:
        status = str(changes["status"] or "CONFIRMED").upper()
        if status not in STATUSES:
            raise InvalidEvent(f"Statut inconnu : « {changes['status']} ».")
        _set(component, "STATUS", status)


def validate_component(component: icalendar.Event, *, override: bool = False) -> list[str]:
    """What is wrong with a VEVENT, in French (empty when it can be stored)."""
    problems = []
    if component.get("DTSTART") is None:
        return ["DTSTART manquant (début de l'événement)"]
    try:
        start, end = component.start, component.end
    except Exception:  # noqa: BLE001 - icalendar raises several types on inconsistent dates
        return ["dates de début et de fin incohérentes"]
    if isinstance(start, dt.datetime) != isinstance(end, dt.datetime):
        problems.append("le début et la fin doivent être tous deux des dates, ou tous deux des heures")
    elif end < start:
        problems.append("la fin précède le début")
    if not str(component.get("UID", "")).strip():
        problems.append("UID manquant")
    elif len(str(component["UID"])) > 1000:
        problems.append("UID trop long")
    if len(_text(component, "SUMMARY")) > MAX_SUMMARY:
        problems.append(f"titre trop long (au plus {MAX_SUMMARY} caractères)")
    if len(_text(component, "DESCRIPTION")) > MAX_TEXT or len(_text(component, "LOCATION")) > MAX_TEXT:
        problems.append(f"description ou lieu trop long (au plus {MAX_TEXT} caractères)")
    if len(_as_list(component.get("ATTENDEE"))) > MAX_ATTENDEES:
        problems.append(f"trop de participants (au plus {MAX_ATTENDEES})")
    if len(list(component.walk("VALARM"))) > MAX_REMINDERS:
        problems.append(f"trop de rappels (au plus {MAX_REMINDERS})")
    status = _text(component, "STATUS").upper()
    if status and status not in STATUSES:
        problems.append(f"statut inconnu ({status})")
    if override:
        if component.get("RRULE"):
            problems.append("une occurrence modifiée (RECURRENCE-ID) ne peut pas avoir de RRULE")
    elif not problems:
        problems.extend(recurrence.check_rules(component))
    return problems


def build_component(data: EventInput, owner: str, default_tz: str = DEFAULT_TZ) -> icalendar.Event:
    """A new VEVENT from what the user filled in."""
    component = icalendar.Event()
    component.add("UID", data.uid or f"{uuid.uuid4()}@webmail")
    component.add("DTSTAMP", dt.datetime.now(dt.UTC).replace(microsecond=0))
    component.add("SEQUENCE", 0)
    changes = {
        "summary": data.summary,
        "start": data.start,
        "end": data.end,
        "tz": data.tz or default_tz,
        "location": data.location,
        "description": data.description,
        "rrule": data.rrule,
        "attendees": data.attendees,
        "reminders": data.reminders,
        "transparent": data.transparent,
        "status": data.status,
    }
    apply_changes(component, changes, default_tz)
    tz = zone(data.tz or default_tz)
    if data.exdates:
        component.add("EXDATE", [_coerce_time(v, tz) for v in data.exdates])
    if data.rdates:
        component.add("RDATE", [_coerce_time(v, tz) for v in data.rdates])
    if data.attendees:
        set_organizer(component, owner)
    return component


def _bump(component: icalendar.Event, to: int | None = None) -> None:
    sequence = int(component.get("SEQUENCE", 0) or 0)
    _set(component, "SEQUENCE", max(sequence + 1, to or 0))
    _set(component, "DTSTAMP", dt.datetime.now(dt.UTC).replace(microsecond=0))
    _set(component, "LAST-MODIFIED", dt.datetime.now(dt.UTC).replace(microsecond=0))


def _recurrence_id(component: icalendar.Event):
    prop = component.get("RECURRENCE-ID")
    return prop.dt if prop is not None else None


# --- documents -------------------------------------------------------------------------------------


def document_fields(component: icalendar.Event, default_tz: str = DEFAULT_TZ) -> dict[str, Any]:
    """The indexed fields of a document, derived from its component."""
    tz = recurrence.component_tz(component, default_tz)
    start, end = component.start, component.end
    start_utc, end_utc = to_utc(start, tz), to_utc(end, tz)
    rid = _recurrence_id(component)
    recurring = recurrence.is_recurring(component)
    until = recurrence.series_until(component, default_tz) if recurring else end_utc
    fields: dict[str, Any] = {
        "uid": str(component["UID"]),
        "kind": OVERRIDE if rid is not None else MASTER,
        "recurrence": recurrence_key(rid, tz) if rid is not None else "",
        "recurrence_id": to_utc(rid, tz) if rid is not None else None,
        "start": start_utc,
        "end": end_utc,
        "until": until,
        "tzid": getattr(tz, "key", "UTC"),
        "all_day": not isinstance(start, dt.datetime),
        "recurring": recurring,
        "summary": _text(component, "SUMMARY"),
        "sequence": int(component.get("SEQUENCE", 0) or 0),
        "organizer": normalise_address(component.get("ORGANIZER", "")),
        "attendees": [
            {"address": a.address, "name": a.name, "partstat": a.partstat, "role": a.role}
            for a in attendees_of(component)
        ],
        "reminders": list(reminders_of(component)),
        "transparent": _text(component, "TRANSP").upper() == "TRANSPARENT",
        "status": (_text(component, "STATUS") or "CONFIRMED").upper(),
        "ical": component.to_ical().decode(),
    }
    fields["has_alarms"] = bool(fields["reminders"])
    if rid is not None:
        # The override answers for its original slot and its new one.
        original = fields["recurrence_id"]
        fields["start"] = min(start_utc, original)
        fields["until"] = max(end_utc, original + (end_utc - start_utc))
        fields["actual_start"] = start_utc
    return fields


def to_stored(doc: Mapping[str, Any]) -> StoredEvent:
    """A document as a StoredEvent."""
    return StoredEvent(
        id=doc["_id"],
        owner=doc["owner"],
        uid=doc["uid"],
        series_id=doc["series_id"],
        kind=doc["kind"],
        sequence=doc.get("sequence", 0),
        summary=doc.get("summary", ""),
        start=doc.get("actual_start", doc["start"]),
        end=doc["end"],
        until=doc["until"],
        tzid=doc.get("tzid", DEFAULT_TZ),
        all_day=doc.get("all_day", False),
        recurring=doc.get("recurring", False),
        recurrence_id=doc.get("recurrence_id"),
        organizer=doc.get("organizer", ""),
        attendees=tuple(
            Attendee(a["address"], a.get("name", ""), a.get("partstat", "NEEDS-ACTION"), a.get("role", ""))
            for a in doc.get("attendees", [])
        ),
        reminders=tuple(doc.get("reminders", [])),
        transparent=doc.get("transparent", False),
        status=doc.get("status", "CONFIRMED"),
        external=doc.get("external", False),
        ical=doc["ical"],
    )


def _occurrence_time(value: dt.datetime | dt.date, event_tz, tz) -> dt.datetime | dt.date:
    if isinstance(value, dt.datetime):
        return localize(value, event_tz).astimezone(tz)
    return value


class AgendaStore:
    """Users' calendars in the database. Every method takes the owner (an account address)."""

    def __init__(self, db: Database, default_tz: str = DEFAULT_TZ):
        self.db = db
        self.collection = db[COLLECTION]
        self.default_tz = default_tz

    def ensure_indexes(self) -> None:
        """Create the collection's indexes (idempotent)."""
        ensure_indexes(self.db, INDEXES)

    # --- low level -------------------------------------------------------------------------------

    def _load(self, owner: str, event_id: str) -> dict[str, Any]:
        """The document `event_id` if `owner` owns it; EventNotFound otherwise (also for another's id).

        Read by `_id` alone (pushed down by FerretDB v1), then checked against the owner.
        """
        if not isinstance(event_id, str) or not event_id:
            raise EventNotFound()
        doc = self.collection.find_one({"_id": event_id})
        if doc is None or doc.get("owner") != normalise_address(owner):
            raise EventNotFound()
        return doc

    def new_document(
        self, owner: str, component: icalendar.Event, *, series_id: str | None = None, **extra
    ) -> dict[str, Any]:
        """The document of a new event (a fresh random `_id`), not yet written."""
        now = utcnow()
        doc_id = uuid.uuid4().hex
        return {
            "_id": doc_id,
            "owner": normalise_address(owner),
            "series_id": series_id or doc_id,
            "revision": 1,
            "created_at": now,
            "updated_at": now,
            "external": False,
            **document_fields(component, self.default_tz),
            **extra,
        }

    def insert_documents(self, docs: list[dict[str, Any]]) -> None:
        """Write new documents in one round trip (imports); InvalidEvent if a UID is already there."""
        if not docs:
            return
        try:
            self.collection.insert_many(docs, ordered=True)
        except BulkWriteError as exc:
            raise InvalidEvent(
                "Un événement portant le même identifiant (UID) a été ajouté entre-temps : "
                "relancez l'import, il complétera sans doublon."
            ) from exc

    def _insert(
        self, owner: str, component: icalendar.Event, *, series_id: str | None = None, **extra
    ) -> dict:
        for _attempt in range(3):
            doc = self.new_document(owner, component, series_id=series_id, **extra)
            doc_id = doc["_id"]
            try:
                self.collection.insert_one(doc)
            except DuplicateKeyError as exc:
                if self.collection.find_one({"_id": doc_id}, {"_id": 1}) is None:
                    raise InvalidEvent(
                        "Un événement portant le même identifiant (UID) existe déjà dans votre agenda."
                    ) from exc
                continue
            return doc
        raise AgendaError("Impossible d'enregistrer l'événement : réessayez.")  # pragma: no cover

    def _replace(self, doc: Mapping[str, Any], component: icalendar.Event, **extra) -> dict:
        """Rewrite `doc` from `component` if nobody changed it since it was read; EditConflict otherwise."""
        fields = document_fields(component, self.default_tz)
        new = {
            **{k: v for k, v in doc.items() if k not in fields},
            **fields,
            **extra,
            "revision": doc.get("revision", 0) + 1,
            "updated_at": utcnow(),
        }
        if fields["kind"] == MASTER:
            new.pop("actual_start", None)
        result = self.collection.replace_one(
            {"_id": doc["_id"], "owner": doc["owner"], "revision": doc.get("revision", 0)}, new
        )
        if result.matched_count != 1:
            raise EditConflict()
        return new

    def _delete_doc(self, doc: Mapping[str, Any]) -> None:
        result = self.collection.delete_one(
            {"_id": doc["_id"], "owner": doc["owner"], "revision": doc.get("revision", 0)}
        )
        if result.deleted_count != 1:
            raise EditConflict()

    def _overrides(self, owner: str, series_id: str) -> list[dict[str, Any]]:
        return list(
            indexed_find(
                self.collection, {"owner": normalise_address(owner), "series_id": series_id, "kind": OVERRIDE}
            )
        )

    def _master_of(self, owner: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        return dict(doc) if doc["kind"] == MASTER else self._load(owner, doc["series_id"])

    # --- reading ---------------------------------------------------------------------------------

    def get(self, owner: str, event_id: str) -> StoredEvent:
        """One stored event (a master or an override) of `owner`."""
        return to_stored(self._load(owner, event_id))

    def component(self, owner: str, event_id: str) -> icalendar.Event:
        """The VEVENT of one stored event of `owner`."""
        return parse_component(self._load(owner, event_id)["ical"])

    def series(self, owner: str, event_id: str) -> list[StoredEvent]:
        """The master of the event's series followed by its overrides."""
        master = self._master_of(owner, self._load(owner, event_id))
        return [to_stored(master)] + [to_stored(d) for d in self._overrides(owner, master["_id"])]

    def find_uid(self, owner: str, uid: str) -> list[StoredEvent]:
        """The documents of `owner` with iCalendar UID `uid` (master first)."""
        docs = list(indexed_find(self.collection, {"owner": normalise_address(owner), "uid": str(uid)}))
        docs.sort(key=lambda d: (d["kind"] != MASTER, d.get("recurrence", "")))
        return [to_stored(d) for d in docs]

    def all_documents(self, owner: str) -> list[dict[str, Any]]:
        """Every document of `owner` (for export), masters first."""
        docs = list(indexed_find(self.collection, {"owner": normalise_address(owner)}))
        docs.sort(key=lambda d: (d["uid"], d["kind"] != MASTER, d.get("recurrence", "")))
        return docs

    # --- writing ---------------------------------------------------------------------------------

    def create(self, owner: str, data: EventInput) -> StoredEvent:
        """Create an event (a series when `data.rrule` or `data.rdates` is set) in `owner`'s calendar."""
        component = build_component(data, owner, self.default_tz)
        problems = validate_component(component)
        if problems:
            raise InvalidEvent("Événement invalide :", problems)
        return to_stored(self._insert(owner, component))

    def insert_component(
        self, owner: str, component: icalendar.Event, *, series_id: str | None = None, external: bool = False
    ) -> StoredEvent:
        """Store an already validated VEVENT (import, invitations) as a new document."""
        return to_stored(self._insert(owner, component, series_id=series_id, external=external))

    def replace_component(
        self, owner: str, event_id: str, component: icalendar.Event, **extra
    ) -> StoredEvent:
        """Rewrite a stored document from a VEVENT with the same UID (import, invitations, replies)."""
        doc = self._load(owner, event_id)
        return to_stored(self._replace(doc, component, **extra))

    def _check_occurrence(self, master: Mapping[str, Any], rid: dt.datetime | dt.date) -> icalendar.Event:
        """The master's occurrence originally at `rid` (OccurrenceNotFound if there is none)."""
        component = parse_component(master["ical"])
        tz = recurrence.component_tz(component, self.default_tz)
        if isinstance(rid, dt.datetime):
            rid = localize(rid, tz)
        key = recurrence_key(rid, tz)
        around = to_utc(rid, tz)
        occurrences = recurrence.expand(
            [component],
            around - dt.timedelta(days=1),
            around + dt.timedelta(days=1) + recurrence.duration_of(component),
        )
        for occurrence in occurrences:
            occurrence_rid = _recurrence_id(occurrence) or occurrence.start
            if recurrence_key(occurrence_rid, tz) == key:
                return occurrence
        raise OccurrenceNotFound()

    def update(
        self,
        owner: str,
        event_id: str,
        changes: Mapping[str, Any],
        scope: str = Scope.SERIES,
        recurrence_id: dt.datetime | dt.date | None = None,
    ) -> StoredEvent:
        """Change an event: the whole series, one occurrence (`recurrence_id`), or it and the following ones.

        UID is kept and SEQUENCE raised. Returns the document changed or created (the override for one
        occurrence, the new series for "this and following").
        """
        if scope not in Scope.ALL:
            raise InvalidEvent(f"Portée de modification inconnue : « {scope} ».")
        doc = self._load(owner, event_id)
        if doc["kind"] == OVERRIDE and scope != Scope.SERIES:
            if recurrence_id is None:
                recurrence_id = parse_component(doc["ical"])["RECURRENCE-ID"].dt
        master = self._master_of(owner, doc) if doc["series_id"] != doc["_id"] else doc
        if scope == Scope.SERIES or not master.get("recurring"):
            if doc["kind"] == OVERRIDE and master is doc:  # an orphan override: edit it alone
                return self._update_override(owner, doc, None, changes)
            return self._update_series(owner, master, changes)
        if recurrence_id is None:
            raise InvalidEvent("Indiquez l'occurrence à modifier (RECURRENCE-ID).")
        if scope == Scope.OCCURRENCE:
            return self._update_override(owner, master, recurrence_id, changes)
        return self._split(owner, master, recurrence_id, changes)

    def move(
        self,
        owner: str,
        event_id: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date | None = None,
        scope: str = Scope.SERIES,
        recurrence_id: dt.datetime | dt.date | None = None,
    ) -> StoredEvent:
        """Move an event (its length kept when `end` is not given)."""
        changes: dict[str, Any] = {"start": start}
        if end is not None:
            changes["end"] = end
        return self.update(owner, event_id, changes, scope, recurrence_id)

    def _update_series(self, owner: str, master: dict, changes: Mapping[str, Any]) -> StoredEvent:
        component = parse_component(master["ical"])
        old = copy_component(component)
        apply_changes(component, changes, self.default_tz)
        overrides = self._overrides(owner, master["_id"]) if master.get("recurring") else []
        rule_changed = "rrule" in changes and (old.get("RRULE") or "") != (component.get("RRULE") or "")
        type_changed = type(old.start) is not type(component.start)
        delta = None
        if not rule_changed and not type_changed and _wall(old.start) != _wall(component.start):
            delta = _wall(component.start) - _wall(old.start)
            if not isinstance(delta, dt.timedelta):  # pragma: no cover
                delta = None
        if delta and "rrule" not in changes:
            days = (_day(component.start) - _day(old.start)).days
            if days % 7:
                _shift_weekdays(component, days)
        if rule_changed or type_changed:
            component.pop("EXDATE", None)
            if type_changed:
                component.pop("RDATE", None)
        elif delta:
            exdates = [_shift(v, delta) for v in component.exdates]
            rdates = [_shift(v, delta) for v, _ in component.rdates]
            component.pop("EXDATE", None)
            component.pop("RDATE", None)
            if exdates:
                component.add("EXDATE", exdates)
            if rdates:
                component.add("RDATE", rdates)
        _bump(component)
        problems = validate_component(component)
        if problems:
            raise InvalidEvent("Modification impossible :", problems)
        new_master = self._replace(master, component)
        for override in overrides:
            if rule_changed or type_changed:
                self._delete_doc(override)
                continue
            oc = parse_component(override["ical"])
            for key in _PROPAGATED:
                if key in changes and _field(oc, key) == _field(old, key):
                    apply_changes(oc, {key: changes[key]}, self.default_tz)
            if delta:
                rid = oc["RECURRENCE-ID"].dt
                if oc.start == rid:  # an occurrence whose time was not changed follows the series
                    length = recurrence.duration_of(oc)
                    _set(oc, "DTSTART", _shift(oc.start, delta))
                    oc.pop("DURATION", None)
                    _set(oc, "DTEND", _shift(oc.start, length))
                _set(oc, "RECURRENCE-ID", _shift(rid, delta))
            _bump(oc, to=int(component.get("SEQUENCE", 0)))
            self._replace(override, oc)
        return to_stored(new_master)

    def _update_override(self, owner: str, master: dict, rid, changes: Mapping[str, Any]) -> StoredEvent:
        if rid is None:  # an orphan override
            component = parse_component(master["ical"])
            apply_changes(component, changes, self.default_tz)
            _bump(component)
            return to_stored(self._replace(master, component))
        occurrence = self._check_occurrence_or_override(owner, master, rid)
        existing, component = occurrence
        apply_changes(component, changes, self.default_tz)
        if changes:
            _bump(component, to=int(master.get("sequence", 0)) + 1)
        elif existing is None:  # an override only to record answers: same version as its series
            _set(component, "SEQUENCE", int(master.get("sequence", 0)))
        problems = validate_component(component, override=True)
        if problems:
            raise InvalidEvent("Modification impossible :", problems)
        if existing is not None:
            return to_stored(self._replace(existing, component))
        return to_stored(self._insert(owner, component, series_id=master["_id"]))

    def _check_occurrence_or_override(
        self, owner: str, master: dict, rid
    ) -> tuple[dict | None, icalendar.Event]:
        """(existing override or None, the override component to edit) for occurrence `rid`."""
        tz = recurrence.component_tz(parse_component(master["ical"]), self.default_tz)
        key = recurrence_key(localize(rid, tz) if isinstance(rid, dt.datetime) else rid, tz)
        for override in self._overrides(owner, master["_id"]):
            if override["recurrence"] == key:
                return override, parse_component(override["ical"])
        occurrence = self._check_occurrence(master, rid)
        component = copy_component(parse_component(master["ical"]))
        for name in _SERIES_ONLY:
            component.pop(name, None)
        original = _recurrence_id(occurrence) or occurrence.start
        _set(component, "RECURRENCE-ID", original)
        _set(component, "DTSTART", occurrence.start)
        component.pop("DURATION", None)
        _set(component, "DTEND", occurrence.end)
        return None, component

    def _split(self, owner: str, master: dict, rid, changes: Mapping[str, Any]) -> StoredEvent:
        """ "This and following": end the series before `rid` and start a new series (new UID) there."""
        component = parse_component(master["ical"])
        tz = recurrence.component_tz(component, self.default_tz)
        occurrence = self._check_occurrence(master, rid)
        original = _recurrence_id(occurrence) or occurrence.start
        if recurrence_key(original, tz) == recurrence_key(component.start, tz):
            return self._update_series(owner, master, changes)
        head, tail = self._cut(component, original, tz)
        tail_uid = f"{uuid.uuid4()}@webmail"
        _set(tail, "UID", tail_uid)
        tail.add("RELATED-TO", str(component["UID"]), parameters={"RELTYPE": "SIBLING"})
        _set(tail, "SEQUENCE", 0)
        _bump(head)
        problems = validate_component(tail)
        if problems:
            raise InvalidEvent("Modification impossible :", problems)
        # Write the new series first: a failure then leaves a duplicate, never a lost occurrence.
        tail_doc = self._insert(owner, tail)
        self._replace(master, head)
        for override in self._overrides(owner, master["_id"]):
            oc = parse_component(override["ical"])
            if to_utc(oc["RECURRENCE-ID"].dt, tz) < to_utc(original, tz):
                continue
            _set(oc, "UID", tail_uid)
            self._delete_doc(override)
            self._insert(owner, oc, series_id=tail_doc["_id"])
        return (
            self._update_series(owner, self._load(owner, tail_doc["_id"]), changes)
            if changes
            else to_stored(tail_doc)
        )

    def _cut(self, component: icalendar.Event, original, tz) -> tuple[icalendar.Event, icalendar.Event]:
        """(the series up to `original`, excluded; a copy of it starting at `original`)."""
        head, tail = copy_component(component), copy_component(component)
        length = recurrence.duration_of(component)
        cut = to_utc(original, tz)
        head_rules, tail_rules = [], []
        for rule in component.rrules:
            head_rule, tail_rule = icalendar.vRecur(dict(rule)), icalendar.vRecur(dict(rule))
            if rule.get("COUNT"):
                before = recurrence.count_before(component, original)
                head_rule["COUNT"] = [before]
                tail_rule["COUNT"] = [max(1, int(rule["COUNT"][0]) - before)]
            else:
                head_rule.pop("COUNT", None)
                if isinstance(original, dt.datetime):
                    head_rule["UNTIL"] = [cut - dt.timedelta(seconds=1)]
                else:
                    head_rule["UNTIL"] = [original - dt.timedelta(days=1)]
            head_rules.append(head_rule)
            tail_rules.append(tail_rule)
        for target, rules in ((head, head_rules), (tail, tail_rules)):
            target.pop("RRULE", None)
            for rule in rules:
                target.add("RRULE", rule)
        for name, values in (("EXDATE", component.exdates), ("RDATE", [v for v, _ in component.rdates])):
            head.pop(name, None)
            tail.pop(name, None)
            before = [v for v in values if to_utc(v, tz) < cut]
            after = [v for v in values if to_utc(v, tz) >= cut]
            if before:
                head.add(name, before)
            if after:
                tail.add(name, after)
        _set(tail, "DTSTART", original)
        tail.pop("DURATION", None)
        _set(
            tail,
            "DTEND",
            _shift(original, length) if isinstance(original, dt.datetime) else original + length,
        )
        return head, tail

    def delete(
        self,
        owner: str,
        event_id: str,
        scope: str = Scope.SERIES,
        recurrence_id: dt.datetime | dt.date | None = None,
    ) -> None:
        """Delete a whole series, one occurrence (an EXDATE), or an occurrence and the following ones."""
        if scope not in Scope.ALL:
            raise InvalidEvent(f"Portée de suppression inconnue : « {scope} ».")
        doc = self._load(owner, event_id)
        if doc["kind"] == OVERRIDE and recurrence_id is None:
            recurrence_id = parse_component(doc["ical"])["RECURRENCE-ID"].dt
        if doc["series_id"] == doc["_id"]:
            master = doc
        else:
            try:
                master = self._load(owner, doc["series_id"])
            except EventNotFound:
                master = doc
        if scope == Scope.SERIES or not master.get("recurring"):
            for override in self._overrides(owner, master["_id"]):
                self.collection.delete_one({"_id": override["_id"], "owner": override["owner"]})
            self.collection.delete_one({"_id": master["_id"], "owner": master["owner"]})
            return
        if recurrence_id is None:
            raise InvalidEvent("Indiquez l'occurrence à supprimer (RECURRENCE-ID).")
        component = parse_component(master["ical"])
        tz = recurrence.component_tz(component, self.default_tz)
        existing, _ = self._check_occurrence_or_override(owner, master, recurrence_id)
        original = (
            _recurrence_id(parse_component(existing["ical"]))
            if existing is not None
            else (_recurrence_id(self._check_occurrence(master, recurrence_id)))
        )
        if scope == Scope.OCCURRENCE:
            exdates = [*component.exdates, original]
            component.pop("EXDATE", None)
            component.add("EXDATE", exdates)
            _bump(component)
            self._replace(master, component)
            if existing is not None:
                self._delete_doc(existing)
            return
        if recurrence_key(original, tz) == recurrence_key(component.start, tz):
            self.delete(owner, master["_id"], Scope.SERIES)
            return
        head, _tail = self._cut(component, original, tz)
        _bump(head)
        self._replace(master, head)
        cut = to_utc(original, tz)
        for override in self._overrides(owner, master["_id"]):
            if override["recurrence_id"] >= cut:
                self._delete_doc(override)

    def set_partstat(self, owner: str, event_id: str, attendee: str, partstat: str, **extra) -> StoredEvent:
        """Record an attendee's answer on a stored event (no SEQUENCE change: RFC 5546 §2.1.5)."""
        doc = self._load(owner, event_id)
        component = parse_component(doc["ical"])
        address = normalise_address(attendee)
        changed = False
        updated = []
        for current in attendees_of(component):
            if current.address == address:
                current = Attendee(current.address, current.name, partstat.upper(), current.role, False)
                changed = True
            updated.append(current)
        if not changed:
            raise EventNotFound("Ce participant ne figure pas sur l'événement.")
        set_attendees(component, updated)
        return to_stored(self._replace(doc, component, **extra))

    # --- range queries ---------------------------------------------------------------------------

    def _window(self, start: dt.datetime, end: dt.datetime, tz_name: str | None):
        tz = zone(tz_name or self.default_tz)
        start, end = localize(start, tz), localize(end, tz)
        recurrence.check_window(start, end)
        return tz, start, end

    def _series_in(self, query: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Documents matching `query`, grouped by series, each group completed with its master."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for doc in indexed_find(self.collection, query):
            groups.setdefault(doc["series_id"], []).append(doc)
        for series_id, docs in groups.items():
            if not any(d["_id"] == series_id for d in docs):
                master = self.collection.find_one({"_id": series_id})
                if master is not None and master.get("owner") == docs[0]["owner"]:
                    docs.insert(0, master)
            docs.sort(key=lambda d: d["kind"] != MASTER)
        return groups

    def _expand_group(self, docs: list[dict[str, Any]], start, end, limit: int):
        """[(document, occurrence component)] of one series within the window."""
        components = [parse_component(d["ical"]) for d in docs]
        by_key = {}
        master = docs[0] if docs[0]["kind"] == MASTER else None
        for doc in docs:
            if doc["kind"] == OVERRIDE:
                by_key[doc["recurrence"]] = doc
        occurrences = recurrence.expand(components, start, end, limit)
        result = []
        event_tz = zone(docs[0].get("tzid") or self.default_tz) if docs[0].get("tzid") != "UTC" else dt.UTC
        for occurrence in occurrences:
            rid = _recurrence_id(occurrence)
            holder = master
            if rid is not None:
                holder = by_key.get(recurrence_key(rid, event_tz), master)
            if holder is None:
                holder = docs[0]
            result.append((holder, occurrence, event_tz))
        return result

    def events_between(
        self, owner: str, start: dt.datetime, end: dt.datetime, tz: str | None = None
    ) -> list[Occurrence]:
        """The occurrences of `owner`'s events overlapping [start, end), sorted, times in `tz`.

        Naive `start`/`end` are wall-clock times in `tz` (default Europe/Paris). Raises RangeTooLarge for
        a window over `recurrence.MAX_WINDOW` and TooManyOccurrences past `recurrence.MAX_OCCURRENCES`.
        """
        zone_, start, end = self._window(start, end, tz)
        owner = normalise_address(owner)
        query = {
            "owner": owner,
            "start": {"$lt": end.astimezone(dt.UTC)},
            "until": {"$gte": start.astimezone(dt.UTC)},
        }
        result: list[Occurrence] = []
        for docs in self._series_in(query).values():
            remaining = recurrence.MAX_OCCURRENCES - len(result)
            for holder, occurrence, event_tz in self._expand_group(docs, start, end, remaining):
                result.append(self._occurrence(holder, occurrence, event_tz, zone_))
        result.sort(key=lambda o: (to_utc(o.start, zone_), o.summary))
        return result

    def _occurrence(self, holder: Mapping[str, Any], occurrence: icalendar.Event, event_tz, tz) -> Occurrence:
        recurring = bool(holder.get("recurring")) or holder["kind"] == OVERRIDE
        rid = _recurrence_id(occurrence) if recurring else None
        start, end = occurrence.start, occurrence.end
        return Occurrence(
            event_id=holder["_id"],
            series_id=holder["series_id"],
            uid=str(occurrence.get("UID", holder["uid"])),
            recurrence_id=_occurrence_time(rid, event_tz, tz) if rid is not None else None,
            start=_occurrence_time(start, event_tz, tz),
            end=_occurrence_time(end, event_tz, tz),
            all_day=not isinstance(start, dt.datetime),
            summary=_text(occurrence, "SUMMARY"),
            location=_text(occurrence, "LOCATION"),
            description=_text(occurrence, "DESCRIPTION"),
            status=(_text(occurrence, "STATUS") or "CONFIRMED").upper(),
            transparent=_text(occurrence, "TRANSP").upper() == "TRANSPARENT",
            organizer=normalise_address(occurrence.get("ORGANIZER", "")),
            attendees=attendees_of(occurrence),
            reminders=reminders_of(occurrence),
            recurring=recurring,
            modified=holder["kind"] == OVERRIDE,
        )

    def due_reminders(self, start: dt.datetime, end: dt.datetime) -> list[DueReminder]:
        """Reminders of every calendar due in [start, end) (UTC), for the notifier.

        Cancelled events and occurrences are skipped. A notifier calls this for consecutive windows and
        remembers what it sent (key: owner, event_id, recurrence_id, minutes_before).
        """
        _tz, start, end = self._window(start, end, "UTC")
        lead = dt.timedelta(minutes=MAX_REMINDER_MINUTES)
        query = {"has_alarms": True, "start": {"$lt": end + lead}, "until": {"$gte": start}}
        due: list[DueReminder] = []
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for docs in self._series_in(query).values():
            groups[(docs[0]["owner"], docs[0]["series_id"])] = docs
        for (owner, _series), docs in groups.items():
            longest = max((max(d.get("reminders") or [0]) for d in docs), default=0)
            horizon = end + dt.timedelta(minutes=max(longest, 0))
            for holder, occurrence, event_tz in self._expand_group(
                docs, start, horizon, recurrence.MAX_OCCURRENCES
            ):
                if (_text(occurrence, "STATUS") or "").upper() == "CANCELLED":
                    continue
                occ = self._occurrence(holder, occurrence, event_tz, dt.UTC)
                begins = to_utc(occ.start, event_tz)
                for minutes in occ.reminders:
                    at = begins - dt.timedelta(minutes=minutes)
                    if start <= at < end:
                        due.append(
                            DueReminder(
                                owner=owner,
                                event_id=occ.event_id,
                                series_id=occ.series_id,
                                uid=occ.uid,
                                recurrence_id=occ.recurrence_id,
                                summary=occ.summary,
                                start=begins,
                                due_at=at,
                                minutes_before=minutes,
                            )
                        )
        due.sort(key=lambda r: (r.due_at, r.owner))
        return due


def _field(component: icalendar.Event, key: str) -> Any:
    """A changeable field's current value, comparable between a master and an override."""
    if key in ("summary", "location", "description"):
        return _text(component, key.upper())
    if key == "attendees":
        return tuple((a.address, a.role) for a in attendees_of(component))
    if key == "reminders":
        return reminders_of(component)
    if key == "transparent":
        return _text(component, "TRANSP").upper() == "TRANSPARENT"
    if key == "status":
        return (_text(component, "STATUS") or "CONFIRMED").upper()
    return None  # pragma: no cover
