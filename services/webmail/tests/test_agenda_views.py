"""The calendar pages through aiohttp's test client, on the real database.

Submission is left unconfigured (no service secret), so every invitation or reply the pages try to send
fails for real with the French "not configured" message: the tests check that the calendar is still
changed and the user told. Invitations and replies that "arrive" are stored in the mailboxes the way
delivery stores them (raw blob + entry). The real mail path is covered by tests/browser/test_agenda.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.policy
import re
import urllib.parse
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import DummyCookieJar, FormData
from aiohttp.test_utils import TestClient, TestServer

from common.config import get_settings
from webmail.agenda import itip as itip_module
from webmail.agenda.model import EventInput
from webmail.agenda.store import AgendaStore
from webmail.app import cookie_name, create_app
from webmail.auth_testing import FakeDirectory, WebClient, store_message
from webmail.views import agenda as views

pytestmark = pytest.mark.integration

PASSWORD = "Montpellier-Test-2026!"
PARIS = views.PARIS


def run(database, body) -> None:
    """Camille and Louis logged in on one webmail (submission not configured)."""
    settings = dataclasses.replace(
        get_settings(),
        webmail_cookie_secure=True,
        submission_service_secret="",
        mail_domain="ac-montpellier.fr",
    )
    directory = FakeDirectory()
    camille = directory.add("Camille", "Martin", PASSWORD)
    louis = directory.add("Louis", "Garcia", PASSWORD)

    async def login(client, address):
        web = WebClient(client, cookie_name(settings))
        await web.get("/connexion")
        response, _ = await web.post("/connexion", {"identifiant": address, "mot_de_passe": PASSWORD})
        assert response.status == 303
        await web.get("/agenda/importer")  # a page of the new session: its CSRF token
        return web

    async def main() -> None:
        app = create_app(settings, database=database, directory=directory)
        async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as one:
            async with TestClient(one.server, cookie_jar=DummyCookieJar()) as two:
                await body(await login(one, camille), camille, await login(two, louis), louis)

    asyncio.run(main())


async def post(web: WebClient, path: str, pairs: list[tuple[str, Any]]):
    form = FormData()
    form.add_field("csrf_token", web.csrf)
    for name, value in pairs:
        if isinstance(value, tuple):
            form.add_field(name, value[1], filename=value[0], content_type=value[2])
        else:
            form.add_field(name, str(value))
    response = await web.client.post(
        path, data=form, headers=web._headers({"Origin": web.origin}), allow_redirects=False
    )
    return response, await web._keep(response)


def event_form(**overrides) -> list[tuple[str, Any]]:
    values = {
        "titre": "Conseil pédagogique",
        "date_debut": "2026-03-16",
        "heure_debut": "10:00",
        "date_fin": "2026-03-16",
        "heure_fin": "11:00",
        "lieu": "Salle des professeurs",
        "description": "",
        "repetition": "aucune",
        "regle": "",
        "jusqua": "",
        "nombre": "",
        "participants": "",
    }
    values.update(overrides)
    pairs = list(values.items())
    for minutes in overrides.get("_rappels", [15]):
        pairs.append(("rappels", minutes))
    return [(k, v) for k, v in pairs if not k.startswith("_")]


def flashes(html: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", m).strip()
        for m in re.findall(r"fr-alert--\w+ fr-alert--sm[^>]*>\s*<p>(.*?)</p>", html, re.S)
    ]


def deliver(db, mailbox: str, message: EmailMessage, folder: str = "INBOX") -> str:
    """Store a message in a mailbox as delivery does."""
    raw = message.as_bytes(policy=email.policy.SMTP)
    return store_message(db, mailbox, raw, f"m-{abs(hash((mailbox, raw)))}", folder)


def event_id_of(location: str) -> str:
    return urllib.parse.urlsplit(location).path.split("/")[3]


# --- pages and access ---------------------------------------------------------------------------------


def test_calendar_pages_need_a_login(database):
    async def body(camille_web, camille, louis_web, louis):
        for path in ("/agenda/semaine", "/agenda/nouveau", "/agenda/exporter", "/agenda/disponibilites"):
            # no session cookie (the client's jar keeps none: WebClient adds it by hand)
            response = await camille_web.client.get(path, allow_redirects=False)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/connexion")

    run(database, body)


def test_create_a_weekly_event_and_see_it_in_day_week_and_month(database):
    async def body(web, camille, _louis_web, _louis):
        response, _ = await post(
            web, "/agenda/nouveau", event_form(repetition="semaine", titre="Réunion d'équipe")
        )
        assert response.status == 303
        event_id = event_id_of(response.headers["Location"])
        _, html = await web.get(response.headers["Location"])
        assert "Réunion d&#39;équipe" in html and "lundi 16 mars 2026, 10:00 – 11:00" in html
        _, week = await web.get("/agenda/semaine?date=2026-03-18")
        assert "Réunion d&#39;équipe" in week and "10:00 – 11:00" in week
        _, later = await web.get("/agenda/semaine?date=2026-06-03")  # unbounded: still there in June
        assert later.count("Réunion d&#39;équipe") == 1
        _, month = await web.get("/agenda/mois?date=2026-03-01")
        assert month.count("Réunion d&#39;équipe") == 3  # 16, 23, 30 March (the grid ends on 5 April)
        _, day = await web.get("/agenda/jour?date=2026-03-23")
        assert "Réunion d&#39;équipe" in day
        _, other_day = await web.get("/agenda/jour?date=2026-03-24")
        assert "Réunion d&#39;équipe" not in other_day and "Aucun événement" in other_day
        stored = AgendaStore(database).get(camille, event_id)
        assert stored.recurring and stored.reminders == (15,)

    run(database, body)


def test_the_week_places_each_event_on_the_hour_grid(database):
    """The 10:00–11:00 weekly event starts on row 9 of a grid from 08:00 (quarter-hour rows), spans four
    rows, alone in its lane; the page links the stylesheet that defines those classes."""

    async def body(web, camille, _louis_web, _louis):
        response, _ = await post(web, "/agenda/nouveau", event_form(repetition="semaine", titre="Grille"))
        assert response.status == 303
        _, week = await web.get("/agenda/semaine?date=2026-03-18")
        # One's own event can be dragged: the move form's address, the occurrence, its start; a series says so.
        assert re.search(
            r'<li class="agenda-l9 agenda-h4 agenda-v0-1" data-deplacer="/agenda/evenement/\w+/deplacer"'
            r' data-occurrence="2026-03-16T10:00:00\+01:00" data-debut="2026-03-16T10:00" data-serie>'
            r'\s*<a class="agenda-evenement',
            week,
        )
        assert week.count("agenda-rangees-40") == 8  # the hour labels and the seven days: 08:00–18:00
        assert '<link rel="stylesheet" href="/agenda/grille.css">' in week
        css = await web.client.get("/agenda/grille.css")
        assert css.status == 200 and css.content_type == "text/css"
        text = await css.text()
        assert ".agenda-l9 { grid-row-start: 9; }" in text and ".agenda-h4 { grid-row-end: span 4; }" in text

    run(database, body)


def test_daylight_saving_change_keeps_paris_wall_clock(database):
    """Europe/Paris moves to summer time on 29 March 2026: the 10:00 meeting stays at 10:00."""

    async def body(web, camille, _louis_web, _louis):
        response, _ = await post(web, "/agenda/nouveau", event_form(repetition="semaine", titre="Point DST"))
        assert response.status == 303
        for monday in ("2026-03-23", "2026-03-30", "2026-10-19", "2026-10-26"):
            _, week = await web.get(f"/agenda/semaine?date={monday}")
            assert re.search(
                r"10:00 – 11:00</time></span>\s*<span class=\"agenda-evenement__titre\">Point DST", week
            ), monday
        occurrences = AgendaStore(database).events_between(
            camille, dt.datetime(2026, 3, 23), dt.datetime(2026, 4, 6), "UTC"
        )
        assert [o.start.hour for o in occurrences] == [9, 8]  # UTC instants move by an hour

    run(database, body)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"date_debut": ""}, "Date de début invalide ou manquante."),
        ({"heure_debut": "25:99"}, "Heure de début invalide"),
        ({"heure_fin": "09:00"}, "La fin précède le début."),
        ({"repetition": "personnalisee", "regle": "FREQ=SECONDLY"}, "trop fréquente"),
        ({"repetition": "personnalisee", "regle": "FREQ=DAILY;COUNT=50000"}, "10"),
        ({"repetition": "personnalisee", "regle": "PAS UNE REGLE"}, "(RRULE) invalide"),
        ({"repetition": "semaine", "nombre": "0"}, "Nombre d&#39;occurrences invalide"),
        ({"participants": "louis.garcia@ac-montpellier.fr, pas-une-adresse"}, "Adresse(s) invalide(s)"),
        ({"_rappels": [-5]}, "Rappels invalides"),
    ],
)
def test_bad_event_input_is_refused_in_french_and_nothing_is_lost(database, overrides, message):
    async def body(web, camille, _louis_web, _louis):
        response, html = await post(
            web, "/agenda/nouveau", event_form(titre="Titre conservé", description="Texte gardé", **overrides)
        )
        assert response.status == 400
        assert message in html
        assert 'value="Titre conservé"' in html and "Texte gardé" in html
        assert database.calendar_events.count_documents({}) == 0

    run(database, body)


def test_an_unbounded_rule_costs_only_its_window(database):
    async def body(web, camille, _louis_web, _louis):
        response, _ = await post(
            web,
            "/agenda/nouveau",
            event_form(repetition="personnalisee", regle="FREQ=DAILY;BYHOUR=8,12,16", titre="Sans fin"),
        )
        assert response.status == 303
        started = asyncio.get_running_loop().time()
        response, html = await web.get("/agenda/mois?date=2090-06-01")
        assert response.status == 200
        assert html.count("Sans fin") > 20
        assert asyncio.get_running_loop().time() - started < 10

    run(database, body)


# --- edit scopes, move, delete --------------------------------------------------------------------------


def test_edit_one_occurrence_the_following_ones_and_delete_one(database):
    async def body(web, camille, _louis_web, _louis):
        store = AgendaStore(database)
        response, _ = await post(web, "/agenda/nouveau", event_form(repetition="semaine", titre="Cours"))
        series = event_id_of(response.headers["Location"])
        occurrence = dt.datetime(2026, 3, 23, 10, tzinfo=PARIS).isoformat()
        # The edit page of one occurrence shows that occurrence's date and the scope choice.
        _, page = await web.get(
            f"/agenda/evenement/{series}/modifier?occurrence={urllib.parse.quote(occurrence)}"
        )
        assert 'value="2026-03-23"' in page and "Cette occurrence seulement" in page
        response, _ = await post(
            web,
            f"/agenda/evenement/{series}/modifier",
            event_form(
                titre="Cours déplacé",
                date_debut="2026-03-24",
                date_fin="2026-03-24",
                repetition="semaine",
                occurrence=occurrence,
                portee="occurrence",
            ),
        )
        assert response.status == 303
        week = store.events_between(camille, dt.datetime(2026, 3, 23), dt.datetime(2026, 3, 30))
        assert [(o.summary, o.start.day, o.modified) for o in week] == [("Cours déplacé", 24, True)]
        # Delete the 30 March occurrence only.
        response, _ = await post(
            web,
            f"/agenda/evenement/{series}/supprimer",
            [
                ("portee", "occurrence"),
                ("occurrence", dt.datetime(2026, 3, 30, 10, tzinfo=PARIS).isoformat()),
            ],
        )
        assert response.status == 303
        assert store.events_between(camille, dt.datetime(2026, 3, 30), dt.datetime(2026, 4, 6)) == []
        # Move 6 April and the following ones to 14:00 (a split: a new series from there).
        response, _ = await post(
            web,
            f"/agenda/evenement/{series}/deplacer",
            [
                ("portee", "suivantes"),
                ("occurrence", dt.datetime(2026, 4, 6, 10, tzinfo=PARIS).isoformat()),
                ("date", "2026-04-06"),
                ("heure", "14:00"),
            ],
        )
        assert response.status == 303
        april = store.events_between(camille, dt.datetime(2026, 3, 9), dt.datetime(2026, 4, 20))
        assert [(o.start.month, o.start.day, o.start.hour) for o in april] == [
            (3, 16, 10),
            (3, 24, 10),
            (4, 6, 14),
            (4, 13, 14),
        ]
        # The whole series, from an occurrence: it moves by as much as that occurrence, not to its date.
        response, _ = await post(
            web,
            f"/agenda/evenement/{series}/deplacer",
            [
                ("portee", "serie"),
                ("occurrence", dt.datetime(2026, 3, 16, 10, tzinfo=PARIS).isoformat()),
                ("date", "2026-03-16"),
                ("heure", "09:00"),
            ],
        )
        assert response.status == 303
        first = store.events_between(camille, dt.datetime(2026, 3, 9), dt.datetime(2026, 3, 23))
        assert [(o.start.day, o.start.hour) for o in first] == [(16, 9)]

    run(database, body)


def test_another_users_calendar_cannot_be_read_or_changed_by_id(database):
    async def body(camille_web, camille, louis_web, louis):
        store = AgendaStore(database)
        private = store.create(louis, EventInput("Rendez-vous médical", dt.datetime(2026, 5, 4, 9)))
        before = database.calendar_events.find_one({"_id": private.id})
        base = f"/agenda/evenement/{private.id}"
        for path in (base, base + "/modifier", base + "?occurrence=2026-05-04T09:00:00%2B02:00"):
            response, html = await camille_web.get(path)
            assert response.status == 404, path
            assert "Rendez-vous" not in html
        missing, _ = await camille_web.get("/agenda/evenement/0123456789abcdef0123456789abcdef")
        assert missing.status == 404
        for suffix, pairs in (
            ("/modifier", event_form(titre="Piraté")),
            ("/deplacer", [("date", "2026-05-05"), ("heure", "10:00")]),
            ("/supprimer", [("portee", "serie")]),
            ("/repondre", [("reponse", "ACCEPTED")]),
        ):
            response, _ = await post(camille_web, base + suffix, pairs)
            assert response.status == 404, suffix
        assert database.calendar_events.find_one({"_id": private.id}) == before
        _, week = await camille_web.get("/agenda/semaine?date=2026-05-04")
        assert "Rendez-vous" not in week
        export, _ = await camille_web.get("/agenda/exporter")
        assert b"Rendez-vous" not in await export.read()
        # and Louis still sees his own event
        response, html = await louis_web.get(base)
        assert response.status == 200 and "Rendez-vous médical" in html

    run(database, body)


# --- .ics import and export ------------------------------------------------------------------------------


MALFORMED = [
    (b"pas un calendrier", "BEGIN:VCALENDAR"),
    (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\nSUMMARY:Sans fin\r\n", "tronqué"),
    (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:a\r\nSUMMARY:Sans date\r\n"
        b"END:VEVENT\r\nEND:VCALENDAR\r\n",
        "DTSTART manquant",
    ),
    (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:b\r\nSUMMARY:Trop\r\n"
        b"DTSTART:20260316T100000Z\r\nRRULE:FREQ=MINUTELY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "fréquente",
    ),
    (b"\xff\xfe\x00garbage", "UTF-8"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_malformed_ics_is_refused_and_nothing_is_imported(database, data, message):
    async def body(web, camille, _louis_web, _louis):
        AgendaStore(database).create(camille, EventInput("Déjà là", dt.datetime(2026, 3, 16, 9)))
        response, html = await post(
            web, "/agenda/importer", [("fichier", ("agenda.ics", data, "text/calendar"))]
        )
        assert response.status == 400
        assert "Rien n&#39;a été importé" in html
        assert message in html, html[html.find("erreur-import") : html.find("erreur-import") + 800]
        assert database.calendar_events.count_documents({}) == 1

    run(database, body)


def test_import_without_a_file_and_too_large(database):
    async def body(web, camille, _louis_web, _louis):
        response, html = await post(web, "/agenda/importer", [])
        assert response.status == 400 and "Choisissez un fichier .ics" in html
        big = b"BEGIN:VCALENDAR\r\n" + b"X" * (views.MAX_UPLOAD + 10)
        response, html = await post(
            web, "/agenda/importer", [("fichier", ("gros.ics", big, "text/calendar"))]
        )
        assert response.status in (400, 413)
        assert "volumineux" in html or "taille" in html

    run(database, body)


def test_export_then_import_keeps_recurrences_and_exceptions(database):
    async def body(camille_web, camille, louis_web, louis):
        store = AgendaStore(database)
        response, _ = await post(
            camille_web, "/agenda/nouveau", event_form(repetition="semaine", titre="Série")
        )
        series = event_id_of(response.headers["Location"])
        await post(
            camille_web,
            f"/agenda/evenement/{series}/supprimer",
            [
                ("portee", "occurrence"),
                ("occurrence", dt.datetime(2026, 3, 23, 10, tzinfo=PARIS).isoformat()),
            ],
        )
        await post(
            camille_web,
            f"/agenda/evenement/{series}/deplacer",
            [
                ("portee", "occurrence"),
                ("occurrence", dt.datetime(2026, 3, 30, 10, tzinfo=PARIS).isoformat()),
                ("date", "2026-03-31"),
                ("heure", "15:00"),
            ],
        )
        exported, _ = await camille_web.get("/agenda/exporter")
        assert exported.status == 200
        assert exported.headers["Content-Disposition"].startswith("attachment")
        data = await exported.read()
        assert b"EXDATE" in data and b"RECURRENCE-ID" in data
        response, _ = await post(
            louis_web, "/agenda/importer", [("fichier", ("agenda.ics", data, "text/calendar"))]
        )
        assert response.status == 303
        _, html = await louis_web.get(response.headers["Location"])
        assert "Import terminé : 2 événement(s) ajouté(s)" in html

        def shape(owner):
            return [
                (o.summary, o.start.isoformat(), o.end.isoformat(), o.modified)
                for o in store.events_between(owner, dt.datetime(2026, 3, 1), dt.datetime(2027, 3, 1))
            ]

        assert shape(louis) == shape(camille) and len(shape(louis)) > 40
        # re-importing changes nothing
        response, _ = await post(
            louis_web, "/agenda/importer", [("fichier", ("agenda.ics", data, "text/calendar"))]
        )
        _, html = await louis_web.get(response.headers["Location"])
        assert "0 événement(s) ajouté(s), 0 mis à jour, 2 inchangé(s)" in html

    run(database, body)


# --- invitations ----------------------------------------------------------------------------------------


def test_invitation_answered_from_the_reader_and_reply_applied_to_the_organiser(database):
    async def body(camille_web, camille, louis_web, louis):
        store = AgendaStore(database)
        response, _ = await post(
            camille_web,
            "/agenda/nouveau",
            event_form(repetition="semaine", titre="Réunion hebdomadaire", participants=louis),
        )
        assert response.status == 303
        event_id = event_id_of(response.headers["Location"])
        _, html = await camille_web.get(response.headers["Location"])
        # submission is not configured here: the event is kept and the user told
        assert "les invitations" in html.lower() or "l&#39;invitation n&#39;a pas pu être envoyée" in html
        invitation = itip_module.build_request(store, camille, event_id, "Camille Martin")
        entry = deliver(database, louis, invitation)
        _, reader = await louis_web.get(f"/courrier/INBOX/{entry}")
        assert "Invitation : Réunion hebdomadaire" in reader
        for label in ("Accepter", "Peut-être", "Refuser"):
            assert f">{label}</button>" in reader
        response, _ = await post(louis_web, f"/agenda/invitation/{entry}", [("reponse", "ACCEPTED")])
        assert response.status == 303
        copy = store.find_uid(louis, store.get(camille, event_id).uid)
        assert [a.partstat for a in copy[0].attendees if a.address == louis] == ["ACCEPTED"]
        _, reader = await louis_web.get(f"/courrier/INBOX/{entry}")
        assert "Votre réponse : <strong>Accepté</strong>" in reader
        # Louis's reply reaches Camille's inbox; her calendar page applies it without her doing anything.
        parsed = itip_module.parse_imip(invitation.as_bytes(), "ac-montpellier.fr")
        reply = deliver(database, camille, itip_module.build_reply(parsed, louis, "ACCEPTED"))
        await camille_web.get("/agenda/semaine?date=2026-03-16")
        assert [a.partstat for a in store.get(camille, event_id).attendees if a.address == louis] == [
            "ACCEPTED"
        ]
        assert database[views.PROCESSED].find_one({"_id": reply})["outcome"] == "applied"
        _, page = await camille_web.get(f"/agenda/evenement/{event_id}")
        assert re.search(
            r"louis\.garcia@ac-montpellier\.fr</span>\s*<span class=\"fr-badge[^\"]*\">Accepté", page
        )
        # Opening the reply afterwards says it was recorded, and applies nothing twice.
        _, reader = await camille_web.get(f"/courrier/INBOX/{reply}")
        assert "enregistrée dans votre agenda" in reader
        # Louis changes his mind: a decline opened in the reader is applied at once.
        declined = deliver(database, camille, itip_module.build_reply(parsed, louis, "DECLINED"))
        _, reader = await camille_web.get(f"/courrier/INBOX/{declined}")
        assert "Refusé" in reader
        assert [a.partstat for a in store.get(camille, event_id).attendees if a.address == louis] == [
            "DECLINED"
        ]

    run(database, body)


def test_an_invitation_from_outside_needs_a_confirmation(database):
    async def body(camille_web, camille, louis_web, louis):
        store = AgendaStore(database)
        outside = AgendaStore(database)
        stranger = "organisatrice@exemple.org"
        source = outside.create(
            stranger,
            EventInput(
                "Salon de l'éducation",
                dt.datetime(2026, 4, 2, 14),
                attendees=[itip_module.Attendee(louis)],
            ),
        )
        message = itip_module.build_request(outside, stranger, source.id)
        entry = deliver(database, louis, message)
        _, reader = await louis_web.get(f"/courrier/INBOX/{entry}")
        assert "vient de l'extérieur de l'académie" in reader
        assert 'name="confirmer_externe"' in reader
        response, _ = await post(louis_web, f"/agenda/invitation/{entry}", [("reponse", "ACCEPTED")])
        assert response.status == 303
        _, after = await louis_web.get(response.headers["Location"])
        assert "Cochez la case de confirmation" in after
        assert store.find_uid(louis, source.uid) == []
        response, _ = await post(
            louis_web, f"/agenda/invitation/{entry}", [("reponse", "TENTATIVE"), ("confirmer_externe", "1")]
        )
        stored = store.find_uid(louis, source.uid)
        assert len(stored) == 1 and stored[0].external
        assert [a.partstat for a in stored[0].attendees if a.address == louis] == ["TENTATIVE"]
        # Camille cannot answer through Louis's message
        response, _ = await post(camille_web, f"/agenda/invitation/{entry}", [("reponse", "ACCEPTED")])
        assert response.status == 404

    run(database, body)


def test_a_forged_or_broken_invitation_is_shown_as_such(database):
    async def body(camille_web, camille, louis_web, louis):
        broken = EmailMessage()
        broken["From"] = camille
        broken["To"] = louis
        broken["Subject"] = "Invitation : cassée"
        broken.set_content("Voir la pièce jointe.")
        broken.add_attachment(
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\n",
            "application",
            "ics",
            filename="invitation.ics",
        )
        entry = deliver(database, louis, broken)
        response, reader = await louis_web.get(f"/courrier/INBOX/{entry}")
        assert response.status == 200
        assert "Invitation d'agenda non prise en compte" in reader
        response, _ = await post(louis_web, f"/agenda/invitation/{entry}", [("reponse", "ACCEPTED")])
        assert response.status == 303
        assert database.calendar_events.count_documents({}) == 0

    run(database, body)


# --- free/busy and reminders ------------------------------------------------------------------------------


def test_free_busy_shows_colleagues_busy_slots_and_common_free_ones(database):
    async def body(camille_web, camille, louis_web, louis):
        store = AgendaStore(database)
        store.create(
            louis, EventInput("Secret de Louis", dt.datetime(2026, 3, 16, 9), dt.datetime(2026, 3, 16, 12))
        )
        store.create(camille, EventInput("Cours", dt.datetime(2026, 3, 16, 13), dt.datetime(2026, 3, 16, 17)))
        query = urllib.parse.urlencode(
            {"participants": f"{louis}, dehors@exemple.org", "date": "2026-03-16", "duree": "60"}
        )
        response, html = await camille_web.get(f"/agenda/disponibilites?{query}")
        assert response.status == 200
        assert "09:00 – 12:00" in html and "13:00 – 17:00" in html
        assert "Secret de Louis" not in html
        assert "dehors@exemple.org</strong> : hors académie" in html
        slots = re.findall(r'href="(/agenda/nouveau\?[^"]+)">(\d\d:\d\d – \d\d:\d\d)', html)
        assert [label for _, label in slots][:3] == ["08:00 – 09:00", "12:00 – 13:00", "17:00 – 18:00"]
        response, form = await camille_web.get(slots[0][0].replace("&amp;", "&"))
        assert 'value="08:00"' in form and louis in form
        response, html = await camille_web.get("/agenda/disponibilites?participants=pas-une-adresse")
        assert response.status == 400 and "Adresse(s) invalide(s)" in html

    run(database, body)


def test_reminders_are_sent_once_and_retried_after_a_failure(database):
    settings = dataclasses.replace(get_settings(), mail_domain="ac-montpellier.fr")
    store = AgendaStore(database)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = (now + dt.timedelta(minutes=10)).astimezone(PARIS).replace(tzinfo=None)
    event = store.create("camille.martin@ac-montpellier.fr", EventInput("Jury", start, reminders=[15, 5]))
    sent: list[tuple[EmailMessage, str]] = []
    failing = [True]

    def send(_settings, message, recipient):
        if failing[0]:
            raise OSError("MX down")
        sent.append((message, recipient))

    notifier = views.ReminderNotifier(database, settings, send)
    assert notifier.run_once(now) == 0  # due (15 min before = 5 min ago) but the MX is down
    assert database[views.REMINDERS_SENT].count_documents({}) == 0  # claim released
    failing[0] = False
    assert notifier.run_once(now) == 1
    assert notifier.run_once(now + dt.timedelta(seconds=30)) == 0  # never twice
    message, recipient = sent[0]
    assert recipient == "camille.martin@ac-montpellier.fr"
    assert message["Subject"].startswith("Rappel : Jury")
    assert message["Auto-Submitted"] == "auto-generated"
    assert f"/agenda/evenement/{event.id}" in message.get_content()
    # the 5-minute reminder comes when due
    assert notifier.run_once(now + dt.timedelta(minutes=5, seconds=1)) == 1
    assert len(sent) == 2
    # claims are purged once they can no longer matter, not before
    assert notifier.purge_claims(now + dt.timedelta(days=1)) == 0
    assert database[views.REMINDERS_SENT].count_documents({}) == 2
    assert notifier.purge_claims(now + views.REMINDER_CLAIMS_KEPT + dt.timedelta(minutes=6)) == 2
    assert database[views.REMINDERS_SENT].count_documents({}) == 0
