"""The address book pages through aiohttp's test client and the real database: the academic directory
search (criteria, count, pages, bad input), cards and « Ajouter à mes contacts », « Mes contacts »
(create, edit, delete, groups), vCard import with its preview and export, recipient completion with
groups and contacts, groups expanded when sending (submission mocked) — and that no route lets a user
read or change another user's contacts or groups by id."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import html
import json
import re
from typing import Any

import pytest
from aiohttp import DummyCookieJar, FormData
from aiohttp.test_utils import TestClient, TestServer

from common.config import get_settings
from common.protos import directory_pb2 as pb
from directory.client import Contact, DirectoryInvalidInput, SearchPage
from webmail import submission
from webmail.app import cookie_name, create_app
from webmail.auth_testing import FakeDirectory, WebClient
from webmail.contacts import CONTACTS, GROUPS, ContactBook, ContactInput

pytestmark = pytest.mark.integration

PASSWORD = "Montpellier-Test-2026!"
UAI = "0340001S"
CARD = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Élodie Durand\r\nN:Durand;Élodie;;;\r\n"
    "EMAIL;TYPE=INTERNET:elodie.durand@ac-montpellier.fr\r\nORG:Collège Jean Moulin;\r\n"
    "TITLE:Principale\r\nUID:card-1\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Hugo Bernard\r\nEMAIL:hugo.bernard@example.org\r\nEND:VCARD\r\n"
)


class Directory(FakeDirectory):
    """The fake directory plus search (with the criteria it was given), cards and reference data."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.searches: list[dict[str, Any]] = []

    def _contacts(self):
        return sorted(self.accounts.values(), key=lambda r: r.account.last_name)

    async def search(self, query: str = "", **criteria: Any) -> SearchPage:
        self._check("search")
        self.searches.append({"query": query, **criteria})
        offset = int(criteria.get("page_token") or 0)
        size = criteria.get("page_size", 20)
        found = [
            Contact(
                a.account_id, a.address, a.display_name, a.establishment_name, a.departement, "Enseignant"
            )
            for r in self._contacts()
            if (a := r.account)
            and (not query or any(w.lower().startswith(query.lower()) for w in a.display_name.split()))
            and criteria.get("establishment_uai", "") in ("", a.establishment_uai)
            and criteria.get("departement", "") in ("", a.departement)
        ]
        page = found[offset : offset + size]
        next_token = str(offset + size) if offset + size < len(found) else ""
        return SearchPage(tuple(page), next_token, len(found))

    async def contact_card(self, identifier: str) -> Any:
        self._check("contact_card")
        record = self._by_id(identifier) or self._find(identifier)
        if record is None:
            return None
        a = record.account
        return pb.ContactCard(
            found=True,
            account_id=a.account_id,
            address=a.address,
            first_name=a.first_name,
            last_name=a.last_name,
            display_name=a.display_name,
            function_code="enseignant",
            function_label="Enseignant",
            establishment_uai=a.establishment_uai,
            establishment_name=a.establishment_name,
            commune="Montpellier",
            departement=a.departement,
            departement_name="Hérault",
        )

    async def reference(self) -> Any:
        base = await super().reference()
        function = dataclasses.make_dataclass("Function", ["code", "label"])
        return dataclasses.make_dataclass("Reference", ["departements", "functions"])(
            base.departements,
            [function("enseignant", "Enseignant"), function("chef", "Chef d'établissement")],
        )


class Client(WebClient):
    """WebClient whose pages come back with HTML entities decoded (« d'établissement », not « d&#39; »)."""

    async def _keep(self, response: Any) -> str:
        return html.unescape(await super()._keep(response))


@dataclasses.dataclass
class Sent:
    calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __call__(self, settings, **kwargs):
        self.calls.append(kwargs)


@pytest.fixture
def sent(monkeypatch):
    recorder = Sent()
    monkeypatch.setattr(submission, "send", recorder)
    return recorder


def run(database, body, people: int = 0) -> None:
    """Camille logged in (`web`), Louis logged in too (`other`), `people` more staff in the directory."""
    settings = dataclasses.replace(get_settings(), webmail_cookie_secure=True)
    directory = Directory()
    camille = directory.add("Camille", "Martin", PASSWORD)
    louis = directory.add("Louis", "Garcia", PASSWORD)
    for n in range(people):
        directory.add("Agent", f"Essai{chr(97 + n // 26)}{chr(97 + n % 26)}", PASSWORD)

    async def main() -> None:
        app = create_app(settings, database=database, directory=directory)
        async with (
            TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client,
        ):
            web = Client(client, cookie_name(settings))
            other = Client(client, cookie_name(settings))
            for who, address in ((web, camille), (other, louis)):
                await who.get("/connexion")
                response, _ = await who.post("/connexion", {"identifiant": address, "mot_de_passe": PASSWORD})
                assert response.status == 303
                await who.get("/contacts")  # the logged-in session's CSRF token
            await body(web, other, directory, camille, louis)

    asyncio.run(main())


async def upload(web: WebClient, path: str, data: bytes, filename: str = "carnet.vcf"):
    form = FormData()
    form.add_field("csrf_token", web.csrf)
    form.add_field("fichier", data, filename=filename, content_type="text/vcard")
    response = await web.client.post(
        path, data=form, headers=web._headers({"Origin": web.origin}), allow_redirects=False
    )
    return response, await web._keep(response)


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_directory_search_by_establishment_with_count_and_pages(database):
    async def body(web, other, directory, camille, louis):
        response, page = await web.get("/annuaire")
        assert response.status == 200 and "Chef d'établissement" in page  # functions from ListReference
        assert "résultat" not in text_of(page)  # nothing searched yet
        response, page = await web.get(f"/annuaire?etablissement={UAI.lower()}&departement=34")
        assert response.status == 200
        assert directory.searches[-1]["establishment_uai"] == UAI  # upper-cased for the directory
        assert directory.searches[-1]["departement"] == "34"
        assert "27 résultats (de 1 à 20)" in text_of(page)
        assert "Agent Essaiaa" in page and "Louis Garcia" not in page  # by name: Essai…, Garcia, Martin
        assert "Page suivante" in page and "page=2" in page
        response, page = await web.get(f"/annuaire?etablissement={UAI}&departement=34&page=2")
        assert directory.searches[-1]["page_token"] == "20"
        assert "27 résultats (de 21 à 27)" in text_of(page)
        assert "Louis Garcia" in page and f"/ecrire?a={louis.replace('@', '%40')}" in page
        # A malformed UAI: a French error next to the field, no search.
        searches = len(directory.searches)
        response, page = await web.get("/annuaire?etablissement=lycee")
        assert response.status == 400
        assert "Numéro d'établissement (UAI) invalide" in page and len(directory.searches) == searches
        # The directory refusing or missing: said in French, not an error page.
        directory.unavailable = True
        response, page = await web.get("/annuaire?q=Louis")
        assert response.status == 200 and "L'annuaire ne répond pas" in page
        directory.unavailable = False

        async def refuse(*args, **kwargs):
            raise DirectoryInvalidInput("Jeton de page invalide.")

        directory.search = refuse
        response, page = await web.get("/annuaire?q=Louis&page=3")
        assert "Jeton de page invalide." in page

    run(database, body, people=25)


def test_card_and_add_a_colleague_to_my_contacts(database):
    async def body(web, other, directory, camille, louis):
        # The app created the indexes at start-up, the unique (owner, uid) among them.
        indexes = database[CONTACTS].index_information()
        assert indexes["owner_uid"].get("unique") and "owner_by_name" in indexes and "owner_email" in indexes
        assert "owner_by_name" in database[GROUPS].index_information()
        account_id = directory.accounts[louis].account.account_id
        response, page = await web.get(f"/annuaire/fiche/{account_id}")
        assert response.status == 200
        assert "Collège Jean Moulin" in page and "Enseignant" in page and UAI in page
        assert f"/annuaire?etablissement={UAI}" in page and "Ajouter à mes contacts" in page
        response, _ = await web.post("/annuaire/ajouter", {"ident": account_id, "nom": "Forgé"})
        assert response.status == 303
        contact_id = response.headers["Location"].rsplit("/", 1)[1]
        contact = ContactBook(database).get(camille, contact_id)
        assert (contact.name, contact.emails, contact.organisation, contact.title) == (
            "Louis Garcia",
            (louis,),
            "Collège Jean Moulin",
            "Enseignant",
        )
        _, page = await web.get(f"/annuaire/fiche/{account_id}")
        assert "Voir dans mes contacts" in page
        response, _ = await web.post("/annuaire/ajouter", {"ident": account_id})
        assert response.headers["Location"] == f"/contacts/{contact_id}"
        _, page = await web.get(response.headers["Location"])
        assert "Louis Garcia est déjà dans vos contacts." in page
        assert ContactBook(database).count(camille) == 1
        response, _ = await web.post("/annuaire/ajouter", {"ident": "inconnu"})
        assert response.status == 404
        # Louis's own book is untouched.
        assert ContactBook(database).count(louis) == 0

    run(database, body)


def test_contacts_create_edit_delete_with_french_errors(database):
    async def body(web, other, directory, camille, louis):
        response, page = await web.post(
            "/contacts/nouveau",
            {"prenom": "Anne", "nom": "Vidal", "adresses": "pas une adresse", "telephones": "", "notes": "x"},
        )
        assert response.status == 400
        assert "adresse électronique invalide : « pas une adresse »" in page
        assert 'value="Anne"' in page and "pas une adresse</textarea>" in page  # nothing lost
        assert database[CONTACTS].count_documents({}) == 0
        response, _ = await web.post(
            "/contacts/nouveau",
            {
                "prenom": "Anne",
                "nom": "Vidal",
                "adresses": "Anne.Vidal@ac-montpellier.fr\nanne@example.org",
                "telephones": "04 67 00 00 00",
                "organisme": "Lycée Joffre",
                "fonction": "Proviseure",
            },
        )
        assert response.status == 303
        contact_id = response.headers["Location"].rsplit("/", 1)[1]
        _, page = await web.get(f"/contacts/{contact_id}")
        assert "Anne Vidal" in page and "anne.vidal@ac-montpellier.fr" in page and "Proviseure" in page
        _, page = await web.get("/contacts?q=joffre")
        assert "1 contact pour « joffre »" in text_of(page) and "Anne Vidal" in page
        _, page = await web.get("/contacts?q=inconnu")
        assert "0 contact pour « inconnu »" in text_of(page)
        _, page = await web.get(f"/contacts/{contact_id}/modifier")
        assert "Proviseure" in page
        response, page = await web.post(
            f"/contacts/{contact_id}/modifier", {"prenom": "", "nom": "", "nom_affiche": "", "adresses": ""}
        )
        assert response.status == 400 and "au moins un nom" in page
        assert ContactBook(database).get(camille, contact_id).title == "Proviseure"  # unchanged
        response, _ = await web.post(
            f"/contacts/{contact_id}/modifier",
            {
                "prenom": "Anne",
                "nom": "Vidal",
                "adresses": "anne.vidal@ac-montpellier.fr",
                "fonction": "DASEN",
            },
        )
        assert response.status == 303
        assert ContactBook(database).get(camille, contact_id).title == "DASEN"
        response, page = await web.get(f"/contacts/{contact_id}/supprimer")
        assert response.status == 200 and "Supprimer définitivement" in page
        response, _ = await web.post(f"/contacts/{contact_id}/supprimer", {})
        assert response.status == 303 and ContactBook(database).count(camille) == 0

    run(database, body)


def test_groups_create_rename_members_delete(database):
    async def body(web, other, directory, camille, louis):
        book = ContactBook(database)
        a = book.create(camille, ContactInput("Anne Vidal", emails=["anne.vidal@ac-montpellier.fr"]))
        b = book.create(camille, ContactInput("Bruno Petit", emails=["bruno.petit@ac-montpellier.fr"]))
        response, _ = await web.post("/contacts/groupes", {"nom": "Équipe de direction"})
        assert response.status == 303
        group_id = response.headers["Location"].rsplit("/", 1)[1]
        response, page = await web.post("/contacts/groupes", {"nom": "equipe DE direction"})
        assert response.status == 400 and "Vous avez déjà un groupe nommé" in page
        response, page = await web.post("/contacts/groupes", {"nom": "A, B"})
        assert response.status == 400 and "ni virgule" in page
        response, page = await web.post(f"/contacts/groupes/{group_id}/ajouter", {"adresses": "x@"})
        assert response.status == 400 and "adresse invalide : « x@ »" in page
        assert book.get_group(camille, group_id).addresses == ()
        form = FormData()
        for name, value in (
            ("csrf_token", web.csrf),
            ("membres", a.id),
            ("membres", b.id),
            ("adresses", "Ext@Example.org"),
        ):
            form.add_field(name, value)
        response = await web.client.post(
            f"/contacts/groupes/{group_id}/ajouter",
            data=form,
            headers=web._headers({"Origin": web.origin}),
            allow_redirects=False,
        )
        assert response.status == 303
        _, page = await web.get(f"/contacts/groupes/{group_id}")
        assert "3 membres ajoutés." in page and "Groupe : Équipe de direction (3)" in page
        assert book.group_recipients(camille, group_id) == [
            "anne.vidal@ac-montpellier.fr",
            "bruno.petit@ac-montpellier.fr",
            "ext@example.org",
        ]
        response, _ = await web.post(f"/contacts/groupes/{group_id}/retirer", {"membres": "ext@example.org"})
        assert response.status == 303 and book.get_group(camille, group_id).addresses == ()
        response, _ = await web.post(f"/contacts/groupes/{group_id}/renommer", {"nom": "Direction"})
        assert response.status == 303 and book.get_group(camille, group_id).name == "Direction"
        # From a contact's page: « Ajouter à un groupe ».
        other_group = book.create_group(camille, "Conseil")
        response, _ = await web.post(f"/contacts/{a.id}/groupe", {"groupe": other_group.id})
        assert book.get_group(camille, other_group.id).contact_ids == (a.id,)
        _, page = await web.get("/contacts")
        assert "Direction" in page and "Conseil" in page and "2 contacts" in text_of(page)
        response, _ = await web.post(f"/contacts/groupes/{group_id}/supprimer", {})
        assert response.status == 303 and [g.name for g in book.list_groups(camille)] == ["Conseil"]
        assert book.count(camille) == 2  # the contacts stay

    run(database, body)


def test_vcard_import_preview_confirm_and_export(database):
    async def body(web, other, directory, camille, louis):
        book = ContactBook(database)
        # The same UID as a card of the file: a refused import must not touch it either.
        book.create(camille, ContactInput("Ancienne Élodie", emails=["old@example.org"], uid="card-1"))
        before = list(database[CONTACTS].find())
        # Malformed files: a clear French error, nothing written, the form again.
        for data, expected in (
            (CARD[:150].encode(), "mal formé ou tronqué"),
            (b"\xff\xfe\x00garbage", "UTF-8"),
            (
                CARD.replace("elodie.durand@ac-montpellier.fr", "pas-une-adresse").encode(),
                "adresse électronique",
            ),
            (b"", "Choisissez un fichier"),
        ):
            response, page = await upload(web, "/contacts/importer", data)
            assert response.status == 400, expected
            assert expected in page and "aucun contact n'a été ajouté" in page
        assert list(database[CONTACTS].find()) == before
        # A good file: a preview first (nothing written), then the import.
        response, page = await upload(web, "/contacts/importer", CARD.encode())
        assert response.status == 200
        assert "1 nouveau contact à ajouter" in text_of(page) and "Hugo Bernard" in page
        assert "1 contact déjà présent à mettre à jour" in text_of(page) and "Élodie Durand" in page
        assert list(database[CONTACTS].find()) == before
        token = re.search(r'name="jeton" value="([^"]+)"', page).group(1)
        # Louis cannot import Camille's pending file into his own book.
        response, page = await other.post("/contacts/importer/confirmer", {"jeton": token})
        assert response.status == 400 and "plus disponible" in page
        assert book.count(louis) == 0
        response, _ = await web.post("/contacts/importer/confirmer", {"jeton": token, "action": "importer"})
        assert response.status == 303
        _, page = await web.get("/contacts")
        assert "Import terminé : 1 contact ajouté, 1 mis à jour, 0 inchangé." in page
        assert book.find_uid(camille, "card-1").emails == ("elodie.durand@ac-montpellier.fr",)
        assert book.count(camille) == 2
        # The same file again: the preview says nothing will change.
        response, page = await upload(web, "/contacts/importer", CARD.encode())
        assert "2 contacts déjà à jour" in text_of(page)
        # Export: everything, or one group.
        response = await web.client.get("/contacts/exporter", headers=web._headers({}))
        assert response.status == 200 and response.content_type == "text/vcard"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert (await response.read()).count(b"BEGIN:VCARD") == 2
        elodie = book.search(camille, "elodie")[0]
        group = book.create_group(camille, "Principaux", [elodie.id])
        response = await web.client.get(f"/contacts/exporter?groupe={group.id}", headers=web._headers({}))
        exported = await response.read()
        assert exported.count(b"BEGIN:VCARD") == 1 and b"elodie.durand@ac-montpellier.fr" in exported

    run(database, body)


def test_another_user_cannot_read_or_change_my_contacts_by_id(database, sent):
    async def body(web, other, directory, camille, louis):
        book = ContactBook(database)
        mine = book.create(camille, ContactInput("Anne Vidal", emails=["anne.vidal@ac-montpellier.fr"]))
        group = book.create_group(camille, "Équipe de direction", [mine.id])
        louis_group = book.create_group(louis, "Mes collègues")
        before = (list(database[CONTACTS].find()), list(database[GROUPS].find()))
        for path in (
            f"/contacts/{mine.id}",
            f"/contacts/{mine.id}/modifier",
            f"/contacts/{mine.id}/supprimer",
            f"/contacts/groupes/{group.id}",
            f"/contacts/groupes/{group.id}/supprimer",
            f"/contacts/exporter?groupe={group.id}",
        ):
            response, page = await other.get(path)
            assert response.status == 404, path
            assert "Anne" not in page and "anne.vidal" not in page
        for path, data in (
            (f"/contacts/{mine.id}/modifier", {"nom_affiche": "Piraté", "adresses": "pirate@example.org"}),
            (f"/contacts/{mine.id}/supprimer", {}),
            (f"/contacts/{mine.id}/groupe", {"groupe": group.id}),
            (f"/contacts/groupes/{group.id}/renommer", {"nom": "Piraté"}),
            (f"/contacts/groupes/{group.id}/ajouter", {"adresses": "pirate@example.org"}),
            (f"/contacts/groupes/{group.id}/retirer", {"membres": mine.id}),
            (f"/contacts/groupes/{group.id}/supprimer", {}),
        ):
            response, _ = await other.post(path, data)
            assert response.status == 404, path
        # Louis cannot put Camille's contact into a group of his own, nor write to her group by name.
        response, page = await other.post(f"/contacts/groupes/{louis_group.id}/ajouter", {"membres": mine.id})
        assert response.status == 400 and "contact inconnu" in page
        response, page = await other.post(
            "/ecrire",
            {"a": "Groupe : Équipe de direction (1)", "objet": "x", "texte": "x", "action": "envoyer"},
        )
        assert response.status == 400 and "groupe de contacts inconnu « Équipe de direction »" in page
        assert sent.calls == []
        # Completion shows Louis nothing of Camille's book.
        response, _ = await other.get("/annuaire/completer?q=equipe")
        assert json.loads(await response.text()) == []
        assert (list(database[CONTACTS].find()), list(database[GROUPS].find())) == before

    run(database, body)


def test_completion_offers_groups_contacts_then_the_directory(database):
    async def body(web, other, directory, camille, louis):
        book = ContactBook(database)
        gaby = book.create(camille, ContactInput("Gaby Garnier", emails=["gaby@example.org"]))
        copy = book.create(camille, ContactInput("Louis Garcia", emails=[louis]))
        book.create_group(camille, "Garde du mercredi", [gaby.id, copy.id, "ext@example.org"])
        response, _ = await web.get("/annuaire/completer?q=gar")
        results = json.loads(await response.text())
        assert results == [
            {"label": "Groupe : Garde du mercredi (3)", "value": "Groupe : Garde du mercredi (3)"},
            {
                "label": "Gaby Garnier <gaby@example.org> — Mes contacts",
                "value": "Gaby Garnier <gaby@example.org>",
            },
            {"label": f"Louis Garcia <{louis}> — Mes contacts", "value": f"Louis Garcia <{louis}>"},
        ]  # Louis of the directory is not offered twice
        directory.unavailable = True
        response, _ = await web.get("/annuaire/completer?q=gar")
        assert response.status == 200 and len(json.loads(await response.text())) == 3

    run(database, body)


def test_a_group_in_a_recipient_field_is_sent_to_its_members(database, sent):
    async def body(web, other, directory, camille, louis):
        book = ContactBook(database)
        anne = book.create(camille, ContactInput("Anne Vidal", emails=["anne.vidal@ac-montpellier.fr"]))
        nobody = book.create(camille, ContactInput("Sans Adresse", phones=["0467000000"]))
        group = book.create_group(camille, "Équipe de direction", [anne.id, nobody.id, louis])
        empty = book.create_group(camille, "Vide")
        response, page = await web.get(f"/contacts/groupes/{group.id}")
        link = re.search(r'href="(/ecrire\?a=[^"]+)"', page).group(1)
        _, page = await web.get(link)
        assert 'value="Groupe : Équipe de direction (3), "' in page
        for bad in ("Groupe : Vide%0ABcc: x@y.fr", "Groupe%20:%20" + "x" * 300):  # a bad link: an empty form
            response, page = await web.get(f"/ecrire?a={bad}")
            assert response.status == 200 and 'id="champ-a" name="a" value=""' in page
        response, page = await web.post(
            "/ecrire", {"a": "Groupe : Vide", "objet": "x", "texte": "x", "action": "envoyer"}
        )
        assert response.status == 400 and "le groupe « Vide » n'a aucun membre" in page
        assert 'value="Groupe : Vide"' in page and empty.id  # the field as typed, nothing lost
        response, _ = await web.post(
            "/ecrire",
            {
                "a": "groupe : équipe de direction (3)",
                "cc": "invite@example.org",
                "objet": "Réunion de rentrée",
                "texte": "Bonjour à tous",
                "action": "envoyer",
            },
        )
        assert response.status == 303, await response.text()
        assert sent.calls[-1]["recipients"] == ["anne.vidal@ac-montpellier.fr", louis, "invite@example.org"]
        message = email.message_from_bytes(sent.calls[-1]["data"], policy=email.policy.default)
        assert "Anne Vidal <anne.vidal@ac-montpellier.fr>" in str(message["To"]) and louis in str(
            message["To"]
        )

    run(database, body)
