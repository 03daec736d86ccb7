"""Accessibility sweep: every page of the webmail, at desktop and phone size, checked by axe-core.

No serious or critical violation is allowed on any page. Each page is its own test, so a report names
the page; a page that does not answer 200 (or 404 for the error page) fails as "not reachable".
"""

from __future__ import annotations

import re
import smtplib
import time
import uuid
from email.message import EmailMessage

import pytest

from tests.browser.conftest import DESKTOP, PASSWORD, PHONE, axe_violations, login, screenshot
from tests.helpers import wait_until

NEW_PASSWORD = "Salagou-Mourèze-2030!"


def letters() -> str:
    """A random suffix of letters (names may hold letters, spaces, hyphens and apostrophes only)."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def reader(platform):
    """An activated account with one message in its inbox: (address, entry)."""
    from directory.testing import make_numen, make_person

    numen = make_numen()
    person = make_person(first_name="Lecture", last_name="Axe" + letters(), numen=numen)
    ok, message, account = platform["directory"].create_account(person)
    assert ok, message
    assert platform["directory"].change_password(account.address, numen, PASSWORD).ok
    mail = EmailMessage()
    mail["From"] = "Principal du collège <principal@exemple.org>"
    mail["To"] = account.address
    mail["Subject"] = "Conseil de classe de la 4e B"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@exemple.org>"
    mail.set_content("Bonjour,\n\nLe conseil de classe aura lieu jeudi à 17 h.\n")
    mail.add_alternative("<p>Bonjour,</p><p>Le conseil de classe aura lieu <b>jeudi à 17 h</b>.</p>", "html")
    mail.add_attachment(b"%PDF-1.4\n", "application", "pdf", filename="ordre-du-jour.pdf")
    with smtplib.SMTP("127.0.0.1", platform["mx"], timeout=60) as smtp:
        smtp.send_message(mail, from_addr="principal@exemple.org", to_addrs=[account.address])
    entry = wait_until(
        lambda: platform["db"].mailbox_entries.find_one({"mailbox": account.address}),
        timeout=180,
        what="delivery",
    )
    return account.address, entry


def check(page, name: str, expected_status: int = 200, response=None) -> None:
    """axe-core at desktop then phone size; fails with every serious/critical violation of both."""
    if response is not None:
        assert response.status == expected_status, f"{name}: not reachable (HTTP {response.status})"
    failures = {}
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(200)  # DSFR's responsive scripts settle
        violations = axe_violations(page)
        if violations:
            failures[label] = violations
    page.set_viewport_size(DESKTOP)
    assert not failures, f"{name}: {failures}"


def test_login(page):
    check(page, "connexion", response=page.goto("/connexion"))


def test_first_connection_help(page):
    check(page, "première connexion", response=page.goto("/premiere-connexion"))


def test_forced_change(page, new_account):
    address, numen, _ = new_account("Forcee")
    page.goto("/connexion")
    page.get_by_label("Identifiant").fill(address)
    page.get_by_label("Mot de passe", exact=True).fill(numen)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/premiere-connexion/mot-de-passe")
    check(page, "changement forcé")
    # With the policy's live feedback shown (error messages are part of the page too).
    page.locator("#nouveau-input").press_sequentially("azerty", delay=10)
    page.wait_for_timeout(500)
    check(page, "changement forcé, mot de passe refusé")


def test_lost_password(page):
    check(page, "mot de passe oublié", response=page.goto("/mot-de-passe/oublie"))


def test_reset_page(page, platform, new_account):
    recovery = f"secours.{uuid.uuid4().hex[:8]}@example.org"
    address, numen, person = new_account("Oubli", recovery_address=recovery)
    platform["directory"].change_password(address, numen, PASSWORD)
    platform["directory"].request_password_reset(
        numen=numen, birth_date=person.birth_date, identifier=address
    )
    link = None
    deadline = time.monotonic() + 60
    while link is None and time.monotonic() < deadline:
        for received in platform["smarthost"].received:
            if recovery in received.recipients:
                body = received.message.get_body(("plain",)).get_content()
                found = re.search(r"https?://\S+/reinitialisation\?jeton=[A-Za-z0-9_-]+", body)
                link = found.group(0) if found else None
        time.sleep(0.5)
    assert link, "no reset mail"
    check(page, "réinitialisation", response=page.goto(link))
    # An invalid link answers 400 with its explanation: that page must be accessible too.
    check(page, "réinitialisation, lien invalide", 400, page.goto("/reinitialisation?jeton=invalide"))


def test_help(page):
    check(page, "aide", response=page.goto("/aide"))


def test_sessions_and_password_change(page, reader):
    login(page, reader[0], PASSWORD)
    check(page, "sessions", response=page.goto("/sessions"))
    check(page, "changer le mot de passe", response=page.goto("/mot-de-passe/changer"))


def test_inbox_and_folders(page, reader):
    login(page, reader[0], PASSWORD)
    check(page, "boîte de réception", response=page.goto("/courrier/INBOX"))
    check(page, "corbeille vide", response=page.goto("/courrier/Trash"))
    check(page, "dossiers", response=page.goto("/courrier/dossiers"))


def test_message(page, reader):
    address, entry = reader
    login(page, address, PASSWORD)
    check(page, "message", response=page.goto(f"/courrier/{entry['folder']}/{entry['_id']}"))


def test_search(page, reader):
    login(page, reader[0], PASSWORD)
    check(page, "recherche", response=page.goto("/courrier/recherche?q=conseil"))
    check(page, "recherche sans résultat", response=page.goto("/courrier/recherche?q=introuvable"))


def test_compose(page, reader):
    address, entry = reader
    login(page, address, PASSWORD)
    check(page, "écrire", response=page.goto("/ecrire"))
    check(page, "répondre", response=page.goto(f"/ecrire?repondre={entry['_id']}"))


def test_address_book(page, reader, platform):
    login(page, reader[0], PASSWORD)
    check(page, "annuaire", response=page.goto("/annuaire"))
    check(page, "annuaire, recherche", response=page.goto("/annuaire?q=Louis"))
    check(page, "annuaire, établissement", response=page.goto("/annuaire?etablissement=0340001S"))
    check(page, "annuaire, UAI invalide", 400, page.goto("/annuaire?etablissement=lycee"))
    louis = platform["directory"].contact_card(platform["people"]["Louis"])
    check(page, "annuaire, fiche", response=page.goto(f"/annuaire/fiche/{louis.account_id}"))


def test_contacts(page, reader, platform):
    from webmail.contacts import ContactBook, ContactInput

    address = reader[0]
    book = ContactBook(platform["db"])
    contact = book.create(address, ContactInput("Anne Vidal" + letters(), emails=["anne.vidal@example.org"]))
    group = book.create_group(address, "Équipe " + letters(), [contact.id, "ext@example.org"])
    login(page, address, PASSWORD)
    check(page, "mes contacts", response=page.goto("/contacts"))
    check(page, "mes contacts, recherche vide", response=page.goto("/contacts?q=introuvable"))
    check(page, "contact", response=page.goto(f"/contacts/{contact.id}"))
    check(page, "nouveau contact", response=page.goto("/contacts/nouveau"))
    check(page, "modifier un contact", response=page.goto(f"/contacts/{contact.id}/modifier"))
    check(page, "supprimer un contact", response=page.goto(f"/contacts/{contact.id}/supprimer"))
    check(page, "groupe", response=page.goto(f"/contacts/groupes/{group.id}"))
    check(page, "importer", response=page.goto("/contacts/importer"))
    page.get_by_label("Fichier de contacts").set_input_files(
        files=[
            {"name": "carnet.vcf", "mimeType": "text/vcard", "buffer": b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x"}
        ]
    )
    page.get_by_role("button", name="Vérifier le fichier").click()
    check(page, "importer, fichier mal formé")
    page.get_by_label("Fichier de contacts").set_input_files(
        files=[
            {
                "name": "carnet.vcf",
                "mimeType": "text/vcard",
                "buffer": b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Hugo Bernard\r\nEMAIL:hugo@example.org\r\nEND:VCARD\r\n",
            }
        ]
    )
    page.get_by_role("button", name="Vérifier le fichier").click()
    check(page, "importer, aperçu")


def test_error_404(page, reader):
    check(page, "erreur 404 (anonyme)", 404, page.goto("/page-qui-n-existe-pas"))
    login(page, reader[0], PASSWORD)
    check(page, "erreur 404", 404, page.goto("/page-qui-n-existe-pas"))
    screenshot(page, "erreur-404")


def test_calendar(page, reader):
    login(page, reader[0], PASSWORD)
    for view in ("jour", "semaine", "mois"):
        check(page, f"agenda, {view}", response=page.goto(f"/agenda/{view}"))
    check(page, "agenda, nouvel événement", response=page.goto("/agenda/nouveau"))
    page.get_by_label("Titre").fill("Conseil de classe")
    page.get_by_label("Heure de fin", exact=True).fill("07:00")
    page.get_by_role("button", name="Enregistrer").click()
    check(page, "agenda, formulaire avec erreurs")
    page.get_by_label("Heure de fin", exact=True).fill("18:00")
    page.get_by_label("Se répète").select_option("semaine")
    page.get_by_role("button", name="Enregistrer").click()
    page.wait_for_url("**/agenda/evenement/**")
    check(page, "agenda, événement")
    page.get_by_role("link", name="Modifier", exact=True).click()
    check(page, "agenda, modifier une occurrence")
    busy = page.goto("/agenda/disponibilites?participants=x@ac-montpellier.fr")
    check(page, "agenda, disponibilités", response=busy)
    check(page, "agenda, importer", response=page.goto("/agenda/importer"))
