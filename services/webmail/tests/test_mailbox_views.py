"""The mail pages through aiohttp's test client over a fake directory and the real database: lists,
reader, body frame, attachments, actions, search, folders, and that nothing of another mailbox shows."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from common.config import get_settings
from webmail.app import cookie_name, create_app
from webmail.auth_testing import FakeDirectory, WebClient, store_message

pytestmark = pytest.mark.integration

PASSWORD = "Montpellier-Test-2026!"


class FakePublisher:
    def __init__(self):
        self.published: list[tuple[str, dict]] = []

    def publish(self, event_type, payload, **kwargs):
        self.published.append((event_type, dict(payload)))


def deliver(db, mailbox: str, message: EmailMessage, folder: str = "INBOX", **extra) -> str:
    raw = bytes(message)
    return store_message(db, mailbox, raw, f"m{abs(hash((mailbox, raw)))}", folder, **extra)


def mail(
    subject: str, body: str = "Bonjour", html: str | None = None, sender="Hélène Durand <helene@example.org>"
):
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "camille.martin@ac-montpellier.fr"
    message["Subject"] = subject
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def run(database, body: Callable[..., Awaitable[None]], **overrides) -> FakePublisher:
    settings = dataclasses.replace(get_settings(), webmail_cookie_secure=True, **overrides)
    directory = FakeDirectory()
    publisher = FakePublisher()

    async def main() -> None:
        app = create_app(settings, database=database, directory=directory, publisher=publisher)
        async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
            web = WebClient(client, cookie_name(settings))
            address = directory.add("Camille", "Martin", PASSWORD)
            other = directory.add("Louis", "Garcia", PASSWORD)
            await web.get("/connexion")
            response, _ = await web.post("/connexion", {"identifiant": address, "mot_de_passe": PASSWORD})
            assert response.status == 303
            await body(web, address, other)

    asyncio.run(main())
    return publisher


def test_junk_shows_the_reasons_of_a_junk_verdict_only(database):
    async def body(web, me, other):
        junk = deliver(
            database,
            me,
            mail("Gagnez un voyage"),
            folder="Junk",
            spam={"verdict": "spam", "score": 0.97, "reasons": ["un lien vers une adresse IP"]},
        )
        # a message the model found legitimate, moved to Junk by its reader: its verdict's reasons (what
        # pushed towards ham) must not read as reasons for junk
        moved = deliver(
            database,
            me,
            mail("Conseil de classe"),
            folder="Junk",
            spam={"verdict": "ham", "score": 0.02, "reasons": ["le domaine de l'expéditeur (ac.fr)"]},
        )
        _, page = await web.get(f"/courrier/Junk/{junk}")
        assert "Ce message a été classé comme indésirable. Raisons : un lien vers une adresse IP." in page
        _, page = await web.get(f"/courrier/Junk/{moved}")
        assert "Ce message a été classé comme indésirable." in page
        assert "Raisons" not in page and "domaine de l&#39;expéditeur" not in page

    run(database, body)


def test_inbox_list_and_reader(database):
    async def body(web, me, other):
        html = (
            '<p>Bonjour <b>Camille</b></p><img src="https://tracker.example/p.gif"><script>alert(1)</script>'
        )
        entry_id = deliver(database, me, mail("Réunion <pédagogique>", html=html))
        theirs = deliver(database, other, mail("Secret de Louis"))
        response, page = await web.get("/courrier/INBOX")
        assert response.status == 200
        assert "Réunion &lt;pédagogique&gt;" in page and "Secret de Louis" not in page
        assert "(1) Boîte de réception" in page
        assert 'class="webmail-ligne webmail-ligne--non-lu"' in page
        response, page = await web.get(f"/courrier/INBOX/{entry_id}")
        assert response.status == 200
        assert "Hélène Durand &lt;helene@example.org&gt;" in page
        assert "Afficher les images" in page
        assert f'src="/courrier/message/{entry_id}/corps?images=0"' in page
        assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
        assert f"/ecrire?repondre={entry_id}" in page and f"/ecrire?transferer={entry_id}" in page
        assert database.mailbox_entries.find_one({"_id": entry_id})["flags"]["seen"] is True
        response, frame = await web.get(f"/courrier/message/{entry_id}/corps?images=0")
        assert response.status == 200
        assert "img-src data:;" in response.headers["Content-Security-Policy"] + ";"
        assert "tracker.example" not in frame and "<script" not in frame and "<b>Camille</b>" in frame
        response, frame = await web.get(f"/courrier/message/{entry_id}/corps?images=1")
        assert "https://tracker.example/p.gif" in frame
        assert "https:" in response.headers["Content-Security-Policy"]
        # another mailbox's entry is "not found" everywhere
        for path in (
            f"/courrier/INBOX/{theirs}",
            f"/courrier/message/{theirs}/corps",
            f"/courrier/message/{theirs}/ligne",
            f"/courrier/message/{theirs}/piece/1",
        ):
            response, _ = await web.get(path)
            assert response.status == 404, path

    run(database, body)


def test_attachments_download_and_quarantine(database):
    async def body(web, me, other):
        message = mail("Bulletin")
        message.add_attachment(b"<html><script>alert(1)</script></html>", maintype="text", subtype="html",
                               filename="bulletin élève.html")  # fmt: skip
        entry_id = deliver(database, me, message)
        part = database.mailbox_entries.find_one({"_id": entry_id})["attachments"][0]["part"]
        response, _ = await web.get(f"/courrier/message/{entry_id}/piece/{part}")
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert "filename*=UTF-8''bulletin%20%C3%A9l%C3%A8ve.html" in response.headers["Content-Disposition"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert await response.read() == b"<html><script>alert(1)</script></html>"
        response, _ = await web.get(f"/courrier/message/{entry_id}/piece/0")
        assert response.status == 404  # not a listed attachment
        infected = EmailMessage()
        infected["Subject"] = "Facture"
        infected.set_content("<p>Ouvrez la <b>pièce jointe</b></p>", subtype="html")
        infected.add_attachment(b"X5O!P%@AP", maintype="application", subtype="zip", filename="facture.zip")
        virus_id = deliver(
            database, me, infected, folder="Quarantine", virus={"signature": "Eicar-Test-Signature"}
        )
        response, page = await web.get(f"/courrier/Quarantine/{virus_id}")
        assert "Eicar-Test-Signature" in page and "texte seul" in page
        article = page[page.find("<article") : page.find("</article>")]
        assert "<iframe" not in article and "/piece/" not in article and "Ouvrez la pièce jointe" in article
        vpart = database.mailbox_entries.find_one({"_id": virus_id})["attachments"][0]["part"]
        response, _ = await web.get(f"/courrier/message/{virus_id}/piece/{vpart}")
        assert response.status == 403

    run(database, body)


def test_actions_move_delete_restore_flag_and_report(database):
    seen = {}

    async def body(web, me, other):
        seen["me"] = me
        first = deliver(database, me, mail("Premier"))
        second = deliver(database, me, mail("Second"))
        theirs = deliver(database, other, mail("De Louis"))
        await web.get("/courrier/INBOX")

        async def act(action, ids, **extra):
            form = {"action": action, "dossier": "INBOX", "retour": "/courrier/INBOX", **extra}
            data = list(form.items()) + [("ids", i) for i in ids] + [("csrf_token", web.csrf)]
            response = await web.client.post(
                "/courrier/actions",
                data=data,
                headers=web._headers({"Origin": web.origin}),
                allow_redirects=False,
            )
            assert response.status == 303
            return response.headers["Location"]

        def folder_of(entry_id):
            return database.mailbox_entries.find_one({"_id": entry_id})["folder"]

        await act("suivre", [first, theirs])
        assert database.mailbox_entries.find_one({"_id": first})["flags"]["flagged"] is True
        assert database.mailbox_entries.find_one({"_id": theirs})["flags"]["flagged"] is False
        await act("supprimer", [first, theirs])
        assert folder_of(first) == "Trash" and folder_of(theirs) == "INBOX"
        await act("restaurer", [first])
        assert folder_of(first) == "INBOX"
        await act("indesirable", [second, theirs])
        assert folder_of(second) == "Junk" and folder_of(theirs) == "INBOX"
        response, page = await web.get("/courrier/Junk")
        assert "Second" in page and "signalé(s) comme indésirable(s)" in page
        await act("non_indesirable", [second])
        assert folder_of(second) == "INBOX"
        # own folders
        response, _ = await web.post("/courrier/dossiers", {"nom": "Projets"})
        assert response.status == 303
        folder_id = response.headers["Location"].rsplit("/", 1)[1]
        await act("deplacer", [first], dossier_cible=folder_id)
        assert folder_of(first) == folder_id
        response, page = await web.get("/courrier/dossiers")
        assert "Projets" in page
        response, page = await web.get(f"/courrier/{folder_id}")
        assert response.status == 200 and "Premier" in page
        # open redirect refused
        location = await act("lu", [first], retour="https://evil.example/")
        assert location == "/courrier/INBOX"

    publisher = run(database, body)
    feedback = [payload for kind, payload in publisher.published if kind == "mail.feedback"]
    assert [(p["label"], p["mailbox"], p["sender"]) for p in feedback] == [
        ("spam", seen["me"], "helene@example.org"),
        ("ham", seen["me"], "helene@example.org"),
    ]
    assert all(p["account_id"] and p["message_id"] for p in feedback)


def test_search_page(database):
    async def body(web, me, other):
        deliver(database, me, mail("Sortie scolaire", body="Le car part devant le collège."))
        deliver(database, me, mail("Conseil de classe", sender="Paul Roux <paul.roux@ac-montpellier.fr>"))
        deliver(database, other, mail("Sortie de Louis"))
        _, page = await web.get("/courrier/recherche?q=college")
        assert "1 résultat" in page and "Sortie scolaire" in page and "Sortie de Louis" not in page
        _, page = await web.get("/courrier/recherche?de=roux")
        assert "Conseil de classe" in page and "Sortie scolaire" not in page
        _, page = await web.get("/courrier/recherche?objet=sortie&dossier=INBOX")
        assert "Sortie scolaire" in page
        _, page = await web.get("/courrier/recherche?q=x&depuis=2026-13-45")
        assert "Date invalide" in page

    run(database, body)


def test_pages_need_a_login(database):
    settings = dataclasses.replace(get_settings(), webmail_cookie_secure=True)

    async def main():
        app = create_app(settings, database=database, directory=FakeDirectory())
        async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
            for path in (
                "/courrier/INBOX",
                "/courrier/recherche?q=a",
                "/evenements",
                "/courrier/message/x/corps",
            ):
                response = await client.get(path, allow_redirects=False)
                assert response.status == 303 and response.headers["Location"].startswith("/connexion"), path

    asyncio.run(main())


def test_row_markup_has_no_unescaped_subject(database):
    async def body(web, me, other):
        entry_id = deliver(database, me, mail('<img src=x onerror=alert(1)>"'))
        _, fragment = await web.get(f"/courrier/message/{entry_id}/ligne")
        assert "<img" not in fragment and "&lt;img src=x onerror=alert(1)&gt;" in fragment
        assert re.search(r"<tr [^>]*data-message=\"" + entry_id, fragment)

    run(database, body)


def test_pagination_and_sorting_links(database):
    async def body(web, me, other):
        for n in range(5):
            deliver(database, me, mail(f"Message {n}"))
        _, page = await web.get("/courrier/INBOX")
        assert 'class="fr-pagination ' in page and 'title="Page 1"' in page
        assert 'href="/courrier/INBOX?page=3"' in page and page.count('class="webmail-ligne') == 2
        _, page = await web.get("/courrier/INBOX?page=3")
        assert page.count('class="webmail-ligne') == 1 and 'aria-current="page" title="Page 3"' in page
        _, page = await web.get("/courrier/INBOX?tri=objet&ordre=asc")
        assert page.index("Message 0") < page.index("Message 1")
        assert 'aria-sort="ascending"' in page
        assert 'href="/courrier/INBOX?tri=objet&amp;ordre=asc&amp;page=2"' in page
        _, page = await web.get("/courrier/Sent")
        assert 'href="/courrier/Sent?tri=expediteur&amp;ordre=asc">À<span' in page

    run(database, body, webmail_page_size=2)


def test_drafts_open_in_the_editor(database):
    async def body(web, me, other):
        draft = deliver(database, me, mail("Brouillon de compte rendu"), folder="Drafts")
        _, page = await web.get("/courrier/Drafts")
        assert f'href="/ecrire?brouillon={draft}"' in page
        _, page = await web.get(f"/courrier/Drafts/{draft}")
        assert "Reprendre le brouillon" in page and "/ecrire?repondre=" not in page

    run(database, body)


def test_a_live_notification_reaches_the_browser_with_the_folder_unread_count(database):
    """notify publishes the entry's fields only; the webmail counts the folder's unread messages when it
    relays the notification to a watching browser, after the entry was stored."""
    import json

    from kombu import Connection, Producer

    from common.topology import LIVE_EXCHANGE

    async def body(web, me, other):
        ids = [deliver(database, me, mail(f"Message {n}")) for n in range(3)]
        database.mailbox_entries.update_one({"_id": ids[0]}, {"$set": {"flags.seen": True}})
        deliver(database, me, mail("Indésirable"), folder="Junk")
        response = await web.client.get("/evenements", headers=web._headers(None))
        assert response.status == 200

        async def event(name: str) -> dict:
            while True:
                line = await asyncio.wait_for(response.content.readline(), 15)
                if line.decode().strip() == f"event: {name}":
                    data = await response.content.readline()
                    return json.loads(data.decode().removeprefix("data: "))

        await event("pret")
        with Connection(get_settings().amqp_url) as connection:
            producer = Producer(connection.channel(), exchange=LIVE_EXCHANGE)
            for folder, entry in (("INBOX", ids[2]), ("Junk", "j")):
                notification = {"type": "new_mail", "mailbox": me, "folder": folder, "entry_id": entry}
                producer.publish(json.dumps(notification), routing_key=me, content_type="application/json")
        inbox, junk = await event("new_mail"), await event("new_mail")
        assert (inbox["folder"], inbox["entry_id"], inbox["unread"]) == ("INBOX", ids[2], 2)
        assert (junk["folder"], junk["unread"]) == ("Junk", 1)
        response.close()

    run(database, body)
