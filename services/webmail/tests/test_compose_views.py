"""The compose pages through aiohttp's test client: sending (submission mocked), replies, forwards,
drafts, uploads, address book completion — and that none of it reaches another user's mail."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import json
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import DummyCookieJar, FormData
from aiohttp.test_utils import TestClient, TestServer

from common.config import get_settings
from common.db import BlobStore
from directory.client import Contact, SearchPage
from webmail import submission
from webmail.app import cookie_name, create_app
from webmail.auth_testing import FakeDirectory, WebClient, store_message

pytestmark = pytest.mark.integration

PASSWORD = "Montpellier-Test-2026!"


class Directory(FakeDirectory):
    """The fake directory plus the address book search."""

    async def search(self, query: str = "", **criteria: Any) -> SearchPage:
        self._check("search")
        found = [
            Contact(
                r.account.account_id,
                r.account.address,
                r.account.display_name,
                "Collège Jean Moulin",
                "34",
                "",
            )
            for r in self.accounts.values()
            if any(w.lower().startswith(query.lower()) for w in r.account.display_name.split())
        ]
        return SearchPage(tuple(found[: criteria.get("page_size", 20)]), "", len(found))

    async def reference(self) -> Any:
        base = await super().reference()
        function = dataclasses.make_dataclass("Function", ["code", "label"])
        return dataclasses.make_dataclass("Reference", ["departements", "functions"])(
            base.departements, [function("enseignant", "Enseignant")]
        )


@dataclasses.dataclass
class Sent:
    calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: Exception | None = None

    def __call__(self, settings, **kwargs):
        if self.error is not None:
            raise self.error
        self.calls.append(kwargs)

    def message(self, n: int = -1):
        return email.message_from_bytes(self.calls[n]["data"], policy=email.policy.default)


@pytest.fixture
def sent(monkeypatch):
    recorder = Sent()
    monkeypatch.setattr(submission, "send", recorder)
    return recorder


def run(database, body, **overrides) -> None:
    settings = dataclasses.replace(get_settings(), webmail_cookie_secure=True, **overrides)
    directory = Directory()
    camille = directory.add("Camille", "Martin", PASSWORD)
    louis = directory.add("Louis", "Garcia", PASSWORD)

    async def main() -> None:
        app = create_app(settings, database=database, directory=directory)
        async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
            web = WebClient(client, cookie_name(settings))
            await web.get("/connexion")
            response, _ = await web.post("/connexion", {"identifiant": camille, "mot_de_passe": PASSWORD})
            assert response.status == 303
            await body(web, camille, louis)

    asyncio.run(main())


async def post_form(web: WebClient, path: str, pairs: list[tuple[str, Any]], **headers: str):
    """A form post with repeated fields (and files: (name, (filename, bytes, type)))."""
    form = FormData()
    form.add_field("csrf_token", web.csrf)
    for name, value in pairs:
        if isinstance(value, tuple):
            form.add_field(name, value[1], filename=value[0], content_type=value[2])
        else:
            form.add_field(name, value)
    response = await web.client.post(
        path, data=form, headers=web._headers({"Origin": web.origin, **headers}), allow_redirects=False
    )
    return response, await web._keep(response)


def store(db, mailbox: str, msg: EmailMessage, folder: str = "INBOX") -> str:
    raw = msg.as_bytes(policy=email.policy.SMTP)
    return store_message(db, mailbox, raw, f"m-{abs(hash((mailbox, msg['Subject'])))}", folder)


def original(to: str, subject: str = "Conseil de classe", attachment: bytes | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Louis Garcia <louis.garcia@ac-montpellier.fr>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Thu, 26 Nov 2026 16:50:00 +0000"
    msg["Message-ID"] = "<conseil@ac-montpellier.fr>"
    msg.set_content("Le conseil a lieu jeudi.\n")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="ordre du jour.pdf")
    return msg


def drafts(db, mailbox: str) -> list[dict]:
    return list(db.mailbox_entries.find({"mailbox": mailbox, "folder": "Drafts"}))


def test_the_compose_page_needs_a_login(database):
    async def body(web, camille, louis):
        response, page = await web.get("/ecrire?a=louis.garcia@ac-montpellier.fr")
        assert response.status == 200
        assert 'value="louis.garcia@ac-montpellier.fr"' in page
        assert 'name="csrf_token"' in page and "Enregistrer le brouillon" in page
        web.token = ""
        response, _ = await web.get("/ecrire")
        assert response.status == 303 and response.headers["Location"] == "/connexion"

    run(database, body)


def test_sending_goes_to_submission_as_the_user(database, sent):
    async def body(web, camille, louis):
        await web.get("/ecrire")
        response, _ = await post_form(
            web,
            "/ecrire",
            [
                ("a", f"Louis Garcia <{louis}>"),
                ("cci", "cache@example.org"),
                ("objet", "Réunion d'équipe"),
                ("texte", "Bonjour Louis,\r\nà jeudi."),
                ("action", "envoyer"),
            ],
        )
        assert response.status == 303 and response.headers["Location"] == "/courrier/INBOX"
        [call] = sent.calls
        assert call["account"] == camille and call["sender"] == camille
        assert call["recipients"] == [louis, "cache@example.org"]
        msg = sent.message()
        assert msg["From"].addresses[0].display_name == "Camille Martin"
        assert msg["Bcc"] is None
        assert msg["Subject"] == "Réunion d'équipe"
        _, page = await web.get("/ecrire")
        assert "Message envoyé." in page

    run(database, body)


@pytest.mark.parametrize(
    ("field", "value"),
    [("objet", "Salut\r\nBcc: x@example.org"), ("a", "louis.garcia@ac-montpellier.fr\r\nBcc: x@example.org")],
)
def test_header_injection_is_refused(database, sent, field, value):
    async def body(web, camille, louis):
        await web.get("/ecrire")
        pairs = {"a": louis, "objet": "Objet", "texte": "x", "action": "envoyer"}
        pairs[field] = value
        response, page = await post_form(web, "/ecrire", list(pairs.items()))
        assert response.status == 400
        assert "retours à la ligne" in page
        assert sent.calls == []

    run(database, body)


def test_reply_and_reply_all_start_from_my_own_message_only(database):
    async def body(web, camille, louis):
        mine = store(database, camille, original(f"{camille}, alice.dubois@ac-montpellier.fr"))
        theirs = store(database, louis, original(louis, "Privé"))
        response, page = await web.get(f"/ecrire?repondre={mine}")
        assert response.status == 200
        assert 'value="Re: Conseil de classe"' in page
        assert "Louis Garcia a écrit :" in page and "&gt; Le conseil a lieu jeudi." in page
        assert 'value="&lt;conseil@ac-montpellier.fr&gt;"' in page  # In-Reply-To
        _, page = await web.get(f"/ecrire?repondre_tous={mine}")
        assert 'name="cc" value="alice.dubois@ac-montpellier.fr"' in page
        for param in ("repondre", "repondre_tous", "transferer", "brouillon"):
            response, _ = await web.get(f"/ecrire?{param}={theirs}")
            assert response.status == 404, param
        infected = store(database, camille, original(camille, "Virus"), folder="Quarantine")
        database.mailbox_entries.update_one({"_id": infected}, {"$set": {"virus": {"signature": "Eicar"}}})
        for param in ("repondre", "transferer"):
            response, _ = await web.get(f"/ecrire?{param}={infected}")
            assert response.status == 404, param

    run(database, body)


def test_forward_keeps_attachments_unless_unchecked(database, sent):
    async def body(web, camille, louis):
        entry = store(database, camille, original(camille, attachment=b"%PDF ordre"))
        _, page = await web.get(f"/ecrire?transferer={entry}")
        assert 'value="TR: Conseil de classe"' in page
        token = f"m:{entry}:2"
        assert f'value="{token}"' in page and "ordre du jour.pdf" in page
        common = [
            ("a", "alice@example.org"),
            ("objet", "TR: Conseil"),
            ("texte", "Voir PJ"),
            ("action", "envoyer"),
        ]
        await post_form(web, "/ecrire", [*common, ("garder", token)])
        assert [p.get_content() for p in sent.message().iter_attachments()] == [b"%PDF ordre"]
        await web.get("/ecrire")
        await post_form(web, "/ecrire", common)  # unchecked: not sent
        assert list(sent.message().iter_attachments()) == []
        # Another mailbox's attachment cannot be named.
        theirs = store(database, louis, original(louis, "Privé", attachment=b"secret"))
        await web.get("/ecrire")
        await post_form(web, "/ecrire", [*common, ("garder", f"m:{theirs}:2")])
        assert list(sent.message().iter_attachments()) == []

    run(database, body)


def test_drafts_are_saved_replaced_resumed_and_deleted_on_send(database, sent):
    async def body(web, camille, louis):
        await web.get("/ecrire")
        csrf = {"X-CSRF-Token": web.csrf}
        fields = [
            ("a", louis),
            ("cci", "cache@example.org"),
            ("objet", "Brouillon"),
            ("texte", "Premier jet"),
        ]
        response, _ = await post_form(web, "/ecrire/brouillon", fields, **csrf)
        first = await response.json()
        [draft] = drafts(database, camille)
        assert draft["_id"] == first["id"] and draft["subject"] == "Brouillon"
        first_blob = draft["message_id"]
        response, _ = await post_form(web, "/ecrire/brouillon", [*fields, ("brouillon", first["id"])], **csrf)
        second = (await response.json())["id"]
        assert [d["_id"] for d in drafts(database, camille)] == [second]
        assert not BlobStore(database).exists(first_blob)
        response, page = await web.get(f"/ecrire?brouillon={second}")
        assert response.status == 200
        assert "Premier jet" in page and 'name="cci" value="cache@example.org"' in page
        await post_form(web, "/ecrire", [*fields, ("brouillon", second), ("action", "envoyer")])
        assert sent.calls and drafts(database, camille) == []

    run(database, body)


def test_the_draft_button_saves_without_javascript(database):
    async def body(web, camille, louis):
        await web.get("/ecrire")
        response, _ = await post_form(
            web, "/ecrire", [("a", louis), ("objet", "Sans JS"), ("fichiers", ("a.txt", b"abc", "text/plain")),
                             ("action", "brouillon")],
        )  # fmt: skip
        assert response.status == 303
        [draft] = drafts(database, camille)
        assert response.headers["Location"] == f"/ecrire?brouillon={draft['_id']}"
        assert [a["filename"] for a in draft["attachments"]] == ["a.txt"]

    run(database, body)


def test_a_failed_send_keeps_the_message_as_a_draft(database, sent):
    sent.error = submission.SubmissionError(
        "Destinataire inconnu : personne@ac-montpellier.fr.", temporary=False
    )

    async def body(web, camille, louis):
        await web.get("/ecrire")
        response, page = await post_form(
            web, "/ecrire", [("a", "personne@ac-montpellier.fr"), ("objet", "Essai"), ("texte", "x"),
                             ("action", "envoyer")],
        )  # fmt: skip
        assert response.status == 400
        assert "Destinataire inconnu : personne@ac-montpellier.fr" in page
        [draft] = drafts(database, camille)
        assert f'value="{draft["_id"]}"' in page

    run(database, body)


def test_uploads_belong_to_their_owner_and_respect_the_limit(database, sent):
    async def body(web, camille, louis):
        await web.get("/ecrire")
        csrf = {"X-CSRF-Token": web.csrf}
        response, _ = await post_form(
            web, "/ecrire/piece-jointe", [("fichier", ("notes é.txt", b"bonjour", "text/plain"))], **csrf
        )
        assert response.status == 200
        upload = await response.json()
        assert upload["filename"] == "notes é.txt" and upload["token"].startswith("u:upload-")
        response, _ = await post_form(
            web, "/ecrire/piece-jointe", [("fichier", ("gros.bin", b"x" * 2000, "application/octet-stream"))],
            **csrf,
        )  # fmt: skip
        assert response.status == 413
        assert "trop volumineux" in (await response.json())["error"]
        # an upload of someone else is ignored
        foreign = "upload-2026010100-" + "0" * 32
        BlobStore(database).put(foreign, b"theirs", {"owner": louis, "filename": "x.txt"})
        await post_form(
            web,
            "/ecrire",
            [("a", louis), ("objet", "PJ"), ("garder", upload["token"]), ("garder", f"u:{foreign}"),
             ("action", "envoyer")],
        )  # fmt: skip
        [part] = list(sent.message().iter_attachments())
        assert part.get_filename() == "notes é.txt" and part.get_content() == "bonjour"
        assert not BlobStore(database).exists(upload["token"][2:])  # consumed
        assert BlobStore(database).exists(foreign)

    run(database, body, webmail_max_upload_bytes=1000)


def test_completion_answers_from_the_address_book(database):
    async def body(web, camille, louis):
        response, _ = await web.get("/annuaire/completer?q=Gar")
        assert response.status == 200
        results = json.loads(await response.text())
        assert results == [
            {
                "label": f"Louis Garcia <{louis}> — Collège Jean Moulin",
                "value": f"Louis Garcia <{louis}>",
            }
        ]
        response, _ = await web.get("/annuaire/completer?q=G")
        assert json.loads(await response.text()) == []

    run(database, body)


def test_the_address_book_page(database):
    async def body(web, camille, louis):
        response, page = await web.get("/annuaire?q=Louis")
        assert response.status == 200
        assert "Louis Garcia" in page and f"/ecrire?a={louis.replace('@', '%40')}" in page

    run(database, body)


def test_abandoned_uploads_are_swept_after_a_day(database):
    from webmail.views.compose import store_upload, sweep_uploads

    fresh = store_upload(database, "camille.martin@ac-montpellier.fr", "a.txt", "text/plain", b"a")
    stale = "upload-2020010100-" + "0" * 32
    BlobStore(database).put(stale, b"old", {"owner": "camille.martin@ac-montpellier.fr"})
    BlobStore(database).put("draft-x", b"draft")
    assert sweep_uploads(database) == 1
    assert not BlobStore(database).exists(stale)
    assert BlobStore(database).exists(fresh) and BlobStore(database).exists("draft-x")
    assert sweep_uploads(database, dt.datetime.now(dt.UTC) + dt.timedelta(days=2)) == 1
    assert not BlobStore(database).exists(fresh)
