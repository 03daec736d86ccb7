"""Invitations by e-mail: iTIP (RFC 5546) over iMIP (RFC 6047).

- `build_request` / `build_cancel`: the organiser's invitation or cancellation, an EmailMessage with a
  French text part and a `text/calendar; method=…` alternative, plus the same `.ics` as an attachment
  (`invitation.ics`). The caller sends it through the platform's real mail path (submission).
- `parse_imip`: an incoming message → `ItipMessage` (REQUEST, REPLY or CANCEL), checked and size-limited;
  never raises anything but ItipError on bad input.
- `build_reply`: the invitee's answer (ACCEPTED, TENTATIVE, DECLINED) to an invitation.
- `receive_request`, `apply_reply`, `apply_cancel`: what an incoming message does to the calendar of the
  mailbox that received it.

The rule for messages from outside the academy (a sender or organiser whose domain is not `mail_domain`):
such a message is parsed and shown, but `external` is set and it changes no calendar unless the user
confirms it (`allow_external=True`); without confirmation the functions raise ExternalItip with a French
message. Whatever its origin, a message only ever touches the calendar of the mailbox that received it
(`owner`), and only:

- a REQUEST or CANCEL whose sender is its ORGANIZER, for an invitation in which `owner` is an attendee; a
  stored copy of the same UID from another organiser is never overwritten;
- a REPLY whose single ATTENDEE is its sender, to an event `owner` organises, on which that attendee is
  listed, and whose SEQUENCE is the stored one (an answer to an older version is refused as outdated).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
from dataclasses import dataclass, field
from email.message import EmailMessage

import icalendar

from common.config import get_settings
from webmail import french
from webmail.agenda import recurrence
from webmail.agenda.errors import EventNotFound, ExternalItip, ItipError
from webmail.agenda.ics import calendar_of
from webmail.agenda.model import Attendee, Scope, StoredEvent, normalise_address, recurrence_key
from webmail.agenda.store import (
    MASTER,
    AgendaStore,
    attendees_of,
    copy_component,
    parse_component,
    set_attendees,
    set_organizer,
    validate_component,
)

METHODS = ("REQUEST", "REPLY", "CANCEL")
ANSWERS = {"ACCEPTED": "Accepté", "TENTATIVE": "Provisoire", "DECLINED": "Refusé"}
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_CALENDAR_BYTES = 1024 * 1024
MAX_COMPONENTS = 200


@dataclass
class ItipMessage:
    """A parsed iMIP message: its method, the event it is about and who sent it."""

    method: str
    uid: str
    sequence: int
    organizer: str
    sender: str
    summary: str
    attendees: tuple[Attendee, ...]
    recurrence_ids: tuple[str, ...]
    components: list[icalendar.Event] = field(default_factory=list)
    external: bool = False


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def is_academic(address: str, mail_domain: str | None = None) -> bool:
    """True when `address` belongs to the academy's mail domain."""
    domain = (mail_domain or get_settings().mail_domain).lower()
    return _domain(normalise_address(address)) == domain


def french_when(component: icalendar.Event) -> str:
    """When the event takes place, in French (« lundi 16 mars 2026, 10:00 – 11:00 (Europe/Paris) »)."""
    start, end = component.start, component.end
    day = french.day(start)
    if not isinstance(start, dt.datetime):
        return f"{day} (journée entière)"
    tz = getattr(start.tzinfo, "key", None) or "UTC"
    same_day = end.date() == start.date()
    until = (
        f"{end:%H:%M}"
        if same_day
        else f"{french.DAYS[end.weekday()]} {end.day} {french.MONTHS[end.month - 1]} {end:%H:%M}"
    )
    return f"{day}, {start:%H:%M} – {until} ({tz})"


def _message(
    sender: str, recipients: list[str], subject: str, text: str, calendar, method: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=_domain(sender) or None)
    body = calendar.to_ical()
    message.set_content(text)
    message.add_alternative(body, maintype="text", subtype="calendar", params={"method": method})
    alternative = message.get_payload()[1]
    alternative.set_param("charset", "utf-8")
    message.make_mixed()
    message.add_attachment(body, maintype="application", subtype="ics", filename="invitation.ics")
    return message


def _invitation_components(store: AgendaStore, owner: str, event_id: str) -> list[icalendar.Event]:
    return [parse_component(e.ical) for e in store.series(owner, event_id)]


def build_request(store: AgendaStore, owner: str, event_id: str, organizer_name: str = "") -> EmailMessage:
    """The invitation (METHOD:REQUEST) to the attendees of `owner`'s event (the whole series)."""
    components = _invitation_components(store, owner, event_id)
    master = components[0]
    recipients = [a.address for a in attendees_of(master) if a.address != normalise_address(owner)]
    if not recipients:
        raise ItipError("Cet événement n'a aucun participant à inviter.")
    for component in components:
        set_organizer(component, owner, organizer_name)
    summary = str(master.get("SUMMARY", "(sans titre)"))
    who = organizer_name or owner
    lines = [
        f"{who} vous invite à « {summary} ».",
        "",
        f"Quand : {french_when(master)}",
    ]
    if recurrence.is_recurring(master):
        lines.append("Événement périodique : voir le détail des dates dans votre agenda.")
    if master.get("LOCATION"):
        lines.append(f"Lieu : {master['LOCATION']}")
    lines += [
        f"Participants : {', '.join(recipients)}",
        "",
        "Répondez depuis votre messagerie académique : Accepter, Peut-être ou Refuser.",
    ]
    if master.get("DESCRIPTION"):
        lines += ["", str(master["DESCRIPTION"])]
    calendar = calendar_of(components, "REQUEST")
    return _message(
        owner,
        recipients,
        f"Invitation : {summary} ({french_when(master)})",
        "\n".join(lines),
        calendar,
        "REQUEST",
    )


def build_cancel(store: AgendaStore, owner: str, event_id: str, organizer_name: str = "") -> EmailMessage:
    """The cancellation (METHOD:CANCEL) of `owner`'s event, to its attendees; send it before deleting."""
    components = _invitation_components(store, owner, event_id)
    master = components[0]
    recipients = [a.address for a in attendees_of(master) if a.address != normalise_address(owner)]
    if not recipients:
        raise ItipError("Cet événement n'a aucun participant à prévenir.")
    cancelled = []
    for component in components:
        component = copy_component(component)
        set_organizer(component, owner, organizer_name)
        component.pop("STATUS", None)
        component.add("STATUS", "CANCELLED")
        sequence = int(component.get("SEQUENCE", 0) or 0) + 1
        component.pop("SEQUENCE", None)
        component.add("SEQUENCE", sequence)
        cancelled.append(component)
    summary = str(master.get("SUMMARY", "(sans titre)"))
    text = f"{organizer_name or owner} a annulé « {summary} » ({french_when(master)})."
    calendar = calendar_of(cancelled, "CANCEL")
    return _message(owner, recipients, f"Annulé : {summary}", text, calendar, "CANCEL")


def _calendar_part(message) -> bytes:
    fallback = None
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if content_type == "text/calendar" or (
            content_type == "application/ics" or filename.endswith(".ics")
        ):
            try:
                payload = part.get_payload(decode=True) or b""
            except Exception:  # noqa: BLE001, S112 - an undecodable part is no invitation
                continue
            if content_type == "text/calendar":
                return payload
            fallback = fallback or payload
    if fallback is None:
        raise ItipError("Ce message ne contient pas d'invitation (aucune partie text/calendar).")
    return fallback


def parse_imip(raw: bytes | EmailMessage, mail_domain: str | None = None) -> ItipMessage:
    """An incoming iMIP message as an ItipMessage; ItipError (French) for anything malformed."""
    if isinstance(raw, bytes | bytearray):
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ItipError("Message trop volumineux pour une invitation.")
        message = email.message_from_bytes(bytes(raw), policy=email.policy.default)
    else:
        message = raw
    try:
        senders = email.utils.getaddresses([str(v) for v in message.get_all("From") or []])
    except Exception:  # noqa: BLE001
        senders = []
    sender = normalise_address(senders[0][1]) if senders else ""
    if "@" not in sender:
        raise ItipError("Invitation sans expéditeur valide.")
    data = _calendar_part(message)
    if len(data) > MAX_CALENDAR_BYTES:
        raise ItipError("Invitation trop volumineuse.")
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").upper().startswith(b"BEGIN:VCALENDAR"):
        raise ItipError("Invitation illisible (le calendrier joint est mal formé).")
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except Exception as exc:
        raise ItipError("Invitation illisible (le calendrier joint est mal formé).") from exc
    method = str(calendar.get("METHOD", "")).upper()
    if method not in METHODS:
        raise ItipError(f"Type d'invitation non pris en charge ({method or 'sans METHOD'}).")
    components = list(calendar.walk("VEVENT"))
    if not components or len(components) > MAX_COMPONENTS:
        raise ItipError("L'invitation ne contient aucun événement, ou en contient trop.")
    uids = {str(c.get("UID", "")).strip() for c in components}
    if len(uids) != 1 or not next(iter(uids)):
        raise ItipError("L'invitation doit concerner un seul événement (un seul UID).")
    for component in components:
        if component.errors:
            raise ItipError("Invitation illisible : propriété mal formée (" + component.errors[0][0] + ").")
        if method != "REPLY":
            problems = validate_component(component, override=component.get("RECURRENCE-ID") is not None)
            if problems:
                raise ItipError("Invitation invalide :", problems)
    first = components[0]
    organizer = normalise_address(first.get("ORGANIZER", ""))
    if "@" not in organizer:
        raise ItipError("L'invitation n'indique pas d'organisateur (ORGANIZER).")
    recurrence_ids = []
    for component in components:
        rid = component.get("RECURRENCE-ID")
        if rid is not None:
            tz = recurrence.component_tz(component)
            recurrence_ids.append(recurrence_key(rid.dt, tz))
    attendees = attendees_of(first)
    if method in ("REQUEST", "CANCEL"):
        if sender != organizer:
            raise ItipError(
                "L'expéditeur de ce message n'est pas l'organisateur de l'événement : message ignoré."
            )
        external = not is_academic(organizer, mail_domain)
    else:
        if len(attendees) != 1 or attendees[0].address != sender:
            raise ItipError("Cette réponse ne vient pas du participant qu'elle concerne : réponse ignorée.")
        external = not is_academic(sender, mail_domain)
    return ItipMessage(
        method=method,
        uid=next(iter(uids)),
        sequence=int(first.get("SEQUENCE", 0) or 0),
        organizer=organizer,
        sender=sender,
        summary=str(first.get("SUMMARY", "")),
        attendees=attendees,
        recurrence_ids=tuple(recurrence_ids),
        components=components,
        external=external,
    )


def build_reply(invitation: ItipMessage, attendee: str, partstat: str, comment: str = "") -> EmailMessage:
    """The answer of `attendee` (ACCEPTED, TENTATIVE or DECLINED) to an invitation, to its organiser."""
    partstat = partstat.upper()
    if partstat not in ANSWERS:
        raise ItipError("Réponse inconnue : choisissez Accepter, Peut-être ou Refuser.")
    if invitation.method != "REQUEST":
        raise ItipError("On ne peut répondre qu'à une invitation.")
    address = normalise_address(attendee)
    listed = [a for a in invitation.attendees if a.address == address]
    if not listed:
        raise ItipError("Vous ne figurez pas parmi les invités de cet événement.")
    replies = []
    for source in invitation.components:
        reply = icalendar.Event()
        for name in ("UID", "SEQUENCE", "RECURRENCE-ID", "DTSTART", "DTEND", "SUMMARY", "ORGANIZER"):
            if source.get(name) is not None:
                reply.add(name, source[name], encode=0)
        reply.add("DTSTAMP", dt.datetime.now(dt.UTC).replace(microsecond=0))
        set_attendees(reply, [Attendee(address, listed[0].name, partstat, listed[0].role, False)])
        if comment:
            reply.add("COMMENT", comment[:1000])
        replies.append(reply)
    calendar = calendar_of(replies, "REPLY")
    label = ANSWERS[partstat]
    verbs = {"ACCEPTED": "a accepté", "TENTATIVE": "a répondu « peut-être » à", "DECLINED": "a refusé"}
    text = f"{listed[0].name or address} {verbs[partstat]} votre invitation « {invitation.summary} »."
    if comment:
        text += f"\n\nCommentaire : {comment[:1000]}"
    return _message(
        address, [invitation.organizer], f"{label} : {invitation.summary}", text, calendar, "REPLY"
    )


def _check_external(itip: ItipMessage, allow_external: bool, what: str) -> None:
    if itip.external and not allow_external:
        origin = itip.sender
        raise ExternalItip(
            f"{what} vient de l'extérieur de l'académie ({origin}) : elle ne modifie votre agenda "
            "que si vous la confirmez."
        )


def receive_request(
    store: AgendaStore, owner: str, itip: ItipMessage, allow_external: bool = False
) -> list[StoredEvent]:
    """Put an invitation (REQUEST) in the calendar of `owner`, an invitee; returns the stored documents.

    A later version (same UID, higher or equal SEQUENCE, same organiser) replaces the stored copy; the
    invitee's own answer is kept when the SEQUENCE did not change.
    """
    if itip.method != "REQUEST":
        raise ItipError("Ce message n'est pas une invitation.")
    owner = normalise_address(owner)
    if owner not in {a.address for a in itip.attendees}:
        raise ItipError("Vous ne figurez pas parmi les invités de cet événement : invitation ignorée.")
    _check_external(itip, allow_external, "Cette invitation")
    existing = store.find_uid(owner, itip.uid)
    if existing and any(e.organizer != itip.organizer for e in existing):
        raise ItipError(
            "Un autre événement de votre agenda porte déjà cet identifiant (UID) : invitation ignorée."
        )
    master_doc = next((e for e in existing if e.kind == MASTER), None)
    if master_doc is not None and itip.sequence < master_doc.sequence:
        raise ItipError("Cette invitation est plus ancienne que celle de votre agenda : ignorée.")
    own_answer = None
    if master_doc is not None and itip.sequence == master_doc.sequence:
        own_answer = next((a.partstat for a in master_doc.attendees if a.address == owner), None)
    stored: list[StoredEvent] = []
    by_key = {("" if e.kind == MASTER else _key(e)): e for e in existing}
    series_id = master_doc.id if master_doc else None
    ordered = sorted(itip.components, key=lambda c: c.get("RECURRENCE-ID") is not None)
    for component in ordered:
        component = copy_component(component)
        if own_answer:
            _set_own_answer(component, owner, own_answer)
        rid = component.get("RECURRENCE-ID")
        key = recurrence_key(rid.dt, recurrence.component_tz(component)) if rid is not None else ""
        current = by_key.get(key)
        if current is None:
            doc = store.insert_component(
                owner, component, series_id=series_id if key else None, external=itip.external
            )
        else:
            doc = store.replace_component(owner, current.id, component, external=itip.external)
        if not key:
            series_id = doc.id
        stored.append(doc)
    return stored


def _set_own_answer(component: icalendar.Event, owner: str, partstat: str) -> None:
    attendees = [
        Attendee(a.address, a.name, partstat, a.role, a.rsvp) if a.address == owner else a
        for a in attendees_of(component)
    ]
    set_attendees(component, attendees)


def _key(stored: StoredEvent) -> str:
    component = parse_component(stored.ical)
    return recurrence_key(component["RECURRENCE-ID"].dt, recurrence.component_tz(component))


def answer_invitation(store: AgendaStore, owner: str, event_id: str, partstat: str) -> StoredEvent:
    """Record `owner`'s own answer on their copy of an invitation (then send `build_reply`)."""
    if partstat.upper() not in ANSWERS:
        raise ItipError("Réponse inconnue : choisissez Accepter, Peut-être ou Refuser.")
    try:
        return store.set_partstat(owner, event_id, owner, partstat)
    except EventNotFound as exc:
        raise ItipError("Vous ne figurez pas parmi les invités de cet événement.") from exc


def apply_reply(
    store: AgendaStore, owner: str, itip: ItipMessage, allow_external: bool = False
) -> StoredEvent:
    """Record an invitee's answer (REPLY) on the event `owner` organises; returns the updated document."""
    if itip.method != "REPLY":
        raise ItipError("Ce message n'est pas une réponse à une invitation.")
    owner = normalise_address(owner)
    _check_external(itip, allow_external, "Cette réponse")
    attendee = itip.attendees[0]
    if attendee.partstat not in ANSWERS:
        raise ItipError("Réponse inconnue : seules Accepté, Provisoire et Refusé sont prises en compte.")
    existing = store.find_uid(owner, itip.uid)
    if not existing:
        raise ItipError("Aucun événement de votre agenda ne correspond à cette réponse.")
    master = next((e for e in existing if e.kind == MASTER), existing[0])
    if master.organizer != owner:
        raise ItipError("Vous n'êtes pas l'organisateur de cet événement : réponse ignorée.")
    if attendee.address not in {a.address for a in master.attendees}:
        raise ItipError(
            f"{attendee.address} ne figure pas parmi les participants de cet événement : réponse ignorée."
        )
    target = master
    if itip.recurrence_ids:
        key = itip.recurrence_ids[0]
        target = next((e for e in existing if e.kind != MASTER and _key(e) == key), None)
        if target is None:
            if itip.sequence != master.sequence:
                raise _outdated(itip.sequence, master.sequence)
            rid = itip.components[0]["RECURRENCE-ID"].dt
            target = store.update(owner, master.id, {}, Scope.OCCURRENCE, rid)
            return store.set_partstat(owner, target.id, attendee.address, attendee.partstat)
    if itip.sequence != target.sequence:
        raise _outdated(itip.sequence, target.sequence)
    return store.set_partstat(owner, target.id, attendee.address, attendee.partstat)


def _outdated(received: int, stored: int) -> ItipError:
    if received < stored:
        return ItipError("Cette réponse concerne une version périmée de l'invitation : ignorée.")
    return ItipError("Cette réponse concerne une version inconnue de l'invitation : ignorée.")


def apply_cancel(
    store: AgendaStore, owner: str, itip: ItipMessage, allow_external: bool = False
) -> list[StoredEvent]:
    """Mark `owner`'s copy of an invitation cancelled (CANCEL from its organiser)."""
    if itip.method != "CANCEL":
        raise ItipError("Ce message n'est pas une annulation.")
    owner = normalise_address(owner)
    _check_external(itip, allow_external, "Cette annulation")
    existing = store.find_uid(owner, itip.uid)
    if not existing:
        raise ItipError("Aucun événement de votre agenda ne correspond à cette annulation.")
    if any(e.organizer != itip.organizer for e in existing):
        raise ItipError("Cette annulation ne vient pas de l'organisateur de l'événement : ignorée.")
    targets = existing
    if itip.recurrence_ids:
        targets = [e for e in existing if e.kind != MASTER and _key(e) in itip.recurrence_ids]
        if not targets:  # a single occurrence cancelled: exclude it from the series
            master = next(e for e in existing if e.kind == MASTER)
            for component in itip.components:
                store.delete(owner, master.id, Scope.OCCURRENCE, component["RECURRENCE-ID"].dt)
            return [store.get(owner, master.id)]
    result = []
    for target in targets:
        if itip.sequence < target.sequence:
            raise ItipError("Cette annulation est plus ancienne que l'invitation de votre agenda : ignorée.")
        component = parse_component(target.ical)
        component.pop("STATUS", None)
        component.add("STATUS", "CANCELLED")
        component.pop("SEQUENCE", None)
        component.add("SEQUENCE", itip.sequence)
        result.append(store.replace_component(owner, target.id, component))
    return result
