"""Invitations by e-mail (iTIP/iMIP): request, reply, cancel, and the rules for outside senders and
spoofed or stale answers. Runs against the real database."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import icalendar
import pytest

from webmail.agenda.errors import ExternalItip, ItipError
from webmail.agenda.itip import (
    answer_invitation,
    apply_cancel,
    apply_reply,
    build_cancel,
    build_reply,
    build_request,
    parse_imip,
    receive_request,
)
from webmail.agenda.model import Attendee, EventInput, Scope
from webmail.agenda.store import AgendaStore

pytestmark = pytest.mark.integration

DOMAIN = "ac-montpellier.fr"
ALICE = "alice.martin@ac-montpellier.fr"
BRUNO = "bruno.petit@ac-montpellier.fr"
CHLOE = "chloe.roux@ac-montpellier.fr"
OUTSIDER = "paul@example.org"


@pytest.fixture
def store(database):
    store = AgendaStore(database)
    store.ensure_indexes()
    return store


def meeting(store, **extra):
    return store.create(
        ALICE,
        EventInput(
            "Conseil d'administration",
            dt.datetime(2026, 3, 30, 17),
            dt.datetime(2026, 3, 30, 19),
            location="Salle du conseil",
            attendees=[Attendee(BRUNO, "Bruno Petit"), Attendee(OUTSIDER, "Paul Extérieur")],
            **extra,
        ),
    )


def roundtrip(message) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def test_request_is_a_multipart_mail_with_calendar_alternative_and_attachment(store):
    event = meeting(store)
    message = build_request(store, ALICE, event.id, "Alice Martin")
    assert message["From"] == ALICE and message["To"] == f"{BRUNO}, {OUTSIDER}"
    assert message["Subject"].startswith("Invitation : Conseil d'administration (lundi 30 mars 2026, 17:00")
    parsed = email.message_from_bytes(roundtrip(message), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    alternative, attachment = parsed.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    text, calendar_part = alternative.get_payload()
    assert "Alice Martin vous invite à « Conseil d'administration »" in text.get_content()
    assert "Lieu : Salle du conseil" in text.get_content()
    assert calendar_part.get_content_type() == "text/calendar"
    assert calendar_part.get_param("method") == "REQUEST"
    assert attachment.get_filename() == "invitation.ics"
    calendar = icalendar.Calendar.from_ical(calendar_part.get_payload(decode=True))
    assert str(calendar["METHOD"]) == "REQUEST"
    [vevent] = calendar.walk("VEVENT")
    assert str(vevent["UID"]) == event.uid and str(vevent["ORGANIZER"]) == f"mailto:{ALICE}"


def test_full_cycle_request_reply_applied_to_the_organiser(store):
    event = meeting(store, rrule="FREQ=WEEKLY;COUNT=3")
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    assert (invitation.method, invitation.uid, invitation.external) == ("REQUEST", event.uid, False)

    [copy] = receive_request(store, BRUNO, invitation)
    assert copy.owner == BRUNO and copy.uid == event.uid and copy.organizer == ALICE
    assert len(store.events_between(BRUNO, dt.datetime(2026, 3, 29), dt.datetime(2026, 4, 20))) == 3
    answer_invitation(store, BRUNO, copy.id, "TENTATIVE")

    reply_mail = build_reply(invitation, BRUNO, "TENTATIVE", "Je serai peut-être en retard.")
    assert reply_mail["To"] == ALICE and reply_mail["Subject"] == "Provisoire : Conseil d'administration"
    reply = parse_imip(roundtrip(reply_mail), DOMAIN)
    assert reply.method == "REPLY" and reply.attendees[0].partstat == "TENTATIVE"
    updated = apply_reply(store, ALICE, reply)
    assert {a.address: a.partstat for a in updated.attendees}[BRUNO] == "TENTATIVE"
    assert updated.sequence == event.sequence  # an answer does not change the event's version

    # The invitee's answer is kept when the same invitation arrives again.
    [again] = receive_request(store, BRUNO, invitation)
    assert {a.address: a.partstat for a in again.attendees}[BRUNO] == "TENTATIVE"


def test_reply_for_one_occurrence_creates_an_override(store):
    event = meeting(store, rrule="FREQ=WEEKLY;COUNT=3")
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    reply_mail = build_reply(invitation, BRUNO, "DECLINED")
    reply = parse_imip(roundtrip(reply_mail), DOMAIN)
    vevent = reply.components[0]
    vevent.add("RECURRENCE-ID", dt.datetime(2026, 4, 6, 15, tzinfo=dt.UTC))
    reply.recurrence_ids = ("20260406T150000Z",)
    override = apply_reply(store, ALICE, reply)
    assert override.kind == "override"
    occurrences = store.events_between(ALICE, dt.datetime(2026, 3, 29), dt.datetime(2026, 4, 20))
    answers = [{a.address: a.partstat for a in o.attendees}[BRUNO] for o in occurrences]
    assert answers == ["NEEDS-ACTION", "DECLINED", "NEEDS-ACTION"]
    # Bruno changes his mind for that occurrence: the override has the series' version, so it applies.
    reply.attendees = (Attendee(BRUNO, "", "ACCEPTED"),)
    assert apply_reply(store, ALICE, reply).id == override.id
    assert {a.address: a.partstat for a in store.get(ALICE, override.id).attendees}[BRUNO] == "ACCEPTED"


def test_reply_from_someone_not_invited_is_refused(store):
    event = meeting(store)
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    with pytest.raises(ItipError) as caught:
        build_reply(invitation, CHLOE, "ACCEPTED")
    assert "ne figurez pas" in str(caught.value)
    # A hand-made reply from Chloé, who is not on the event.
    reply = parse_imip(hand_made_reply(event.uid, CHLOE), DOMAIN)
    with pytest.raises(ItipError) as caught:
        apply_reply(store, ALICE, reply)
    assert f"{CHLOE} ne figure pas parmi les participants" in str(caught.value)
    assert {a.address: a.partstat for a in store.get(ALICE, event.id).attendees}[BRUNO] == "NEEDS-ACTION"


def hand_made_reply(uid: str, attendee: str, sequence: int = 0) -> bytes:
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//\r\nMETHOD:REPLY\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260301T000000Z\r\nSEQUENCE:{sequence}\r\n"
        f"ORGANIZER:mailto:{ALICE}\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{attendee}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (
        f"From: {attendee}\r\nTo: {ALICE}\r\nSubject: Accepté\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/calendar; method=REPLY; charset="utf-8"\r\n\r\n' + calendar
    ).encode()


def test_reply_whose_sender_is_not_the_attendee_is_refused(store):
    event = meeting(store)
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    reply = build_reply(invitation, BRUNO, "DECLINED")
    reply.replace_header("From", CHLOE)
    with pytest.raises(ItipError) as caught:
        parse_imip(roundtrip(reply), DOMAIN)
    assert "ne vient pas du participant" in str(caught.value)


def test_reply_only_touches_the_calendar_of_the_organiser_who_received_it(store):
    event = meeting(store)
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    receive_request(store, BRUNO, invitation)
    reply = parse_imip(roundtrip(build_reply(invitation, BRUNO, "ACCEPTED")), DOMAIN)
    # Sent to Chloé's mailbox: she has no such event.
    with pytest.raises(ItipError) as caught:
        apply_reply(store, CHLOE, reply)
    assert "Aucun événement" in str(caught.value)
    # Bruno has a copy of the event but is not its organiser.
    with pytest.raises(ItipError) as caught:
        apply_reply(store, BRUNO, reply)
    assert "pas l'organisateur" in str(caught.value)


def test_reply_to_an_outdated_version_is_refused(store):
    event = meeting(store)
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    store.move(ALICE, event.id, dt.datetime(2026, 3, 31, 17))  # SEQUENCE 1
    reply = parse_imip(roundtrip(build_reply(invitation, BRUNO, "ACCEPTED")), DOMAIN)
    with pytest.raises(ItipError) as caught:
        apply_reply(store, ALICE, reply)
    assert "version périmée" in str(caught.value)


def test_external_reply_needs_the_organisers_consent(store):
    event = meeting(store)
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    reply = parse_imip(roundtrip(build_reply(invitation, OUTSIDER, "ACCEPTED")), DOMAIN)
    assert reply.external
    with pytest.raises(ExternalItip) as caught:
        apply_reply(store, ALICE, reply)
    assert "extérieur de l'académie (paul@example.org)" in str(caught.value)
    assert {a.address: a.partstat for a in store.get(ALICE, event.id).attendees}[OUTSIDER] == "NEEDS-ACTION"
    updated = apply_reply(store, ALICE, reply, allow_external=True)
    assert {a.address: a.partstat for a in updated.attendees}[OUTSIDER] == "ACCEPTED"


def outside_invitation(organizer=OUTSIDER, attendee=BRUNO, uid="ext-1@example.org", sequence=0) -> bytes:
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//ext//\r\nMETHOD:REQUEST\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260301T000000Z\r\nSEQUENCE:{sequence}\r\n"
        "DTSTART:20260401T080000Z\r\nDTEND:20260401T090000Z\r\nSUMMARY:Webinaire\r\n"
        f"ORGANIZER:mailto:{organizer}\r\nATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:{attendee}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (
        f"From: {organizer}\r\nTo: {attendee}\r\nSubject: Invitation\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/calendar; method=REQUEST; charset="utf-8"\r\n\r\n' + calendar
    ).encode()


def test_invitation_from_outside_is_only_added_with_consent(store):
    invitation = parse_imip(outside_invitation(), DOMAIN)
    assert invitation.external
    with pytest.raises(ExternalItip) as caught:
        receive_request(store, BRUNO, invitation)
    assert "Cette invitation vient de l'extérieur de l'académie" in str(caught.value)
    assert store.find_uid(BRUNO, "ext-1@example.org") == []
    [stored] = receive_request(store, BRUNO, invitation, allow_external=True)
    assert stored.external


def test_invitation_never_overwrites_an_event_of_another_organiser(store):
    event = meeting(store)
    # Bruno's copy of Alice's meeting, then an outsider's invitation reusing its UID.
    receive_request(store, BRUNO, parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN))
    hijack = parse_imip(outside_invitation(uid=event.uid, sequence=9), DOMAIN)
    with pytest.raises(ItipError) as caught:
        receive_request(store, BRUNO, hijack, allow_external=True)
    assert "porte déjà cet identifiant" in str(caught.value)
    [copy] = store.find_uid(BRUNO, event.uid)
    assert copy.organizer == ALICE and copy.summary == "Conseil d'administration"


def test_invitation_for_someone_else_is_refused(store):
    invitation = parse_imip(outside_invitation(attendee=CHLOE), DOMAIN)
    with pytest.raises(ItipError) as caught:
        receive_request(store, BRUNO, invitation, allow_external=True)
    assert "ne figurez pas parmi les invités" in str(caught.value)


def test_request_whose_sender_is_not_the_organiser_is_refused():
    raw = outside_invitation(organizer=ALICE).replace(f"From: {ALICE}".encode(), f"From: {OUTSIDER}".encode())
    with pytest.raises(ItipError) as caught:
        parse_imip(raw, DOMAIN)
    assert "n'est pas l'organisateur" in str(caught.value)


def test_cancel_marks_the_invitees_copy_cancelled(store):
    event = meeting(store)
    invitation = parse_imip(roundtrip(build_request(store, ALICE, event.id)), DOMAIN)
    receive_request(store, BRUNO, invitation)
    cancel = parse_imip(roundtrip(build_cancel(store, ALICE, event.id)), DOMAIN)
    assert cancel.method == "CANCEL" and cancel.sequence == 1
    [cancelled] = apply_cancel(store, BRUNO, cancel)
    assert cancelled.status == "CANCELLED"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"From: a@ac-montpellier.fr\r\nSubject: x\r\n\r\nBonjour", "aucune partie text/calendar"),
        (
            b"From: a@ac-montpellier.fr\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:REQ",
            "illisible",
        ),
        (b"From: a@ac-montpellier.fr\r\nContent-Type: text/calendar\r\n\r\n\x00\x01\x02garbage", "illisible"),
        (outside_invitation().replace(b"METHOD:REQUEST", b"METHOD:PUBLISH"), "non pris en charge (PUBLISH)"),
        (outside_invitation().replace(b"DTSTART:20260401T080000Z\r\n", b""), "DTSTART manquant"),
        (outside_invitation().replace(b"DTSTART:20260401T080000Z", b"DTSTART:2026"), "mal formée"),
        (outside_invitation().replace(b"ORGANIZER:mailto:paul@example.org\r\n", b""), "organisateur"),
        (b"Subject: x\r\n\r\n", "expéditeur"),
    ],
)
def test_malformed_imip_messages_give_clear_errors(raw, expected):
    with pytest.raises(ItipError) as caught:
        parse_imip(raw, DOMAIN)
    assert expected in str(caught.value)


def test_event_without_attendees_cannot_be_sent(store):
    event = store.create(ALICE, EventInput("Seule", dt.datetime(2026, 3, 30, 17)))
    with pytest.raises(ItipError) as caught:
        build_request(store, ALICE, event.id)
    assert "aucun participant" in str(caught.value)


def test_another_user_cannot_send_invitations_for_my_event(store):
    event = meeting(store)
    with pytest.raises(Exception) as caught:
        build_request(store, CHLOE, event.id)
    assert "introuvable" in str(caught.value)
    assert store.update(ALICE, event.id, {"summary": "x"}, Scope.SERIES).sequence == 1
