"""The address book in a real browser against the whole platform: finding colleagues in the academic
directory by establishment, adding them to « Mes contacts », making a group of them and writing to the
group — the members must really receive the message through submission, the pipeline and delivery —
then vCard import (a malformed file refused in French with nothing written, a good one previewed and
imported) and export, and another user's contact ids answering 404 in the browser."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from tests.browser.conftest import axe_violations, login, screenshot
from tests.helpers import wait_until
from webmail.contacts import ContactBook

#: The test establishments (directory.testing.TEST_ESTABLISHMENTS): one in Lozère.
LOZERE_UAI = "0480001R"


def letters() -> str:
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:8])


def received(platform, address: str, subject: str) -> dict:
    """The mailbox entry of `subject` delivered to `address` (waits for the pipeline)."""
    return wait_until(
        lambda: platform["db"].mailbox_entries.find_one({"mailbox": address, "subject": subject}),
        timeout=120,
        what=f"delivery of {subject!r} to {address}",
    )


def test_find_colleagues_by_establishment_and_write_to_their_group(
    platform, browser, page, activated_account
):
    people, password = platform["people"], platform["password"]
    # Two colleagues of a school in Lozère; their last names are unique to this run.
    family = "Ferry" + letters()
    colleagues = [
        activated_account("Margaux", last_name=family, establishment_uai=LOZERE_UAI, function="direction")[0],
        activated_account("Thibault", last_name=family, establishment_uai=LOZERE_UAI)[0],
    ]
    login(page, people["Camille"], password)

    # The directory: by establishment (UAI) and département, from the navigation, keyboard only.
    page.get_by_role("link", name="Annuaire", exact=True).first.click()
    expect(page.get_by_role("heading", level=1, name="Annuaire académique")).to_be_visible()
    page.get_by_label("Établissement").fill(LOZERE_UAI.lower())
    page.get_by_label("Département").select_option("48")
    page.get_by_label("Nom").fill(family)
    page.get_by_label("Nom").press("Enter")
    expect(page.locator("#nombre-resultats")).to_have_text("2 résultats")
    for address in colleagues:
        expect(page.get_by_role("row", name=re.compile(re.escape(address)))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Margaux"))).to_contain_text("École primaire Jules Ferry")
    assert axe_violations(page) == []
    page.get_by_label("Département").scroll_into_view_if_needed()  # the results in the screenshot
    page.evaluate(
        "window.scrollBy(0, document.getElementById('annuaire-departement').getBoundingClientRect().top - 16)"
    )
    screenshot(page, "annuaire-etablissement")
    page.get_by_label("Fonction").select_option(label="Personnel de direction")
    page.get_by_role("button", name="Rechercher").click()
    expect(page.locator("#nombre-resultats")).to_have_text("1 résultat")
    expect(page.get_by_role("row", name=re.compile(re.escape(colleagues[0])))).to_be_visible()

    # The card: establishment and function, then « Ajouter à mes contacts ».
    page.get_by_role("link", name=re.compile(f"^Margaux {family}", re.I)).click()
    card = page.locator("#fiche-contact")
    expect(card).to_contain_text("École primaire Jules Ferry (UAI 0480001R)")
    expect(card).to_contain_text("Mende")
    expect(card.locator("dd").filter(has_text="Personnel de direction")).to_have_count(1)
    assert axe_violations(page) == []
    page.get_by_role("button", name="Ajouter à mes contacts").click()
    expect(
        page.get_by_text(re.compile(f"Margaux {family} a été ajouté à vos contacts", re.I))
    ).to_be_visible()
    # Thibault straight from the results, through « Personnels du même établissement ».
    page.goto(f"/annuaire/fiche/{colleagues[0]}")
    expect(page.get_by_role("link", name="Voir dans mes contacts")).to_be_visible()
    page.get_by_role("link", name="Personnels du même établissement").click()
    expect(page.get_by_label("Établissement")).to_have_value(LOZERE_UAI)
    page.get_by_role("button", name=re.compile(f"^Ajouter à mes contacts : Thibault {family}", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Thibault")

    # A group of both, from « Mes contacts ».
    group = f"Équipe de direction {letters()}"
    page.get_by_role("link", name="Contacts", exact=True).first.click()
    expect(page.get_by_role("heading", level=1, name="Mes contacts")).to_be_visible()
    page.get_by_label("Nom du nouveau groupe").fill(group)
    page.get_by_role("button", name="Créer le groupe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Groupe « {group} »")
    for first in ("Margaux", "Thibault"):
        box = page.get_by_role("checkbox", name=re.compile(f"^{first} {family}", re.I))
        box.focus()  # keyboard only (the DSFR label covers the box for the mouse)
        page.keyboard.press("Space")
        expect(box).to_be_checked()
    page.get_by_role("button", name="Ajouter au groupe").click()
    expect(page.get_by_text("2 membres ajoutés.")).to_be_visible()
    assert axe_violations(page) == []
    page.goto("/contacts")
    expect(page.get_by_role("link", name=group)).to_be_visible()
    assert axe_violations(page) == []
    screenshot(page, "mes-contacts")

    # Writing to the group: completion offers it, the keyboard chooses it, sending expands it.
    subject = f"Réunion de direction {letters()}"
    page.goto("/ecrire")
    to = page.get_by_label("À", exact=False).first
    to.press_sequentially(group[:14], delay=20)
    option = page.get_by_role("option", name=f"Groupe : {group} (2)")
    expect(option).to_be_visible()
    to.press("ArrowDown")
    to.press("Enter")
    expect(to).to_have_value(f"Groupe : {group} (2), ")
    page.get_by_label("Objet").fill(subject)
    page.get_by_label("Message").fill("Bonjour à tous,\n\nla réunion aura lieu lundi.\n\nCamille")
    page.get_by_role("button", name="Envoyer").click()
    page.wait_for_url("**/courrier/INBOX")
    expect(page.get_by_text("Message envoyé.")).to_be_visible()
    for address in colleagues:  # each member really received it
        entry = received(platform, address, subject)
        assert entry["folder"] == "INBOX"

    # Another user cannot open Camille's contacts or group by id: 404 like a missing one.
    louis = browser.new_context(base_url=platform["url"], locale="fr-FR")
    louis_page = louis.new_page()
    login(louis_page, people["Louis"], password)
    book = ContactBook(platform["db"])
    mine = book.search(people["Camille"], family)
    group_id = book.find_group(people["Camille"], group).id
    assert len(mine) == 2
    for path in (
        f"/contacts/{mine[0].id}",
        f"/contacts/{mine[0].id}/modifier",
        f"/contacts/groupes/{group_id}",
    ):
        response = louis_page.goto(path)
        assert response.status == 404, path
        expect(louis_page.get_by_text(family)).to_have_count(0)
    louis.close()


CARDS = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Élodie Durand\r\nN:Durand;Élodie;;;\r\n"
    "EMAIL;TYPE=INTERNET:elodie.durand@ac-montpellier.fr\r\nORG:Collège Jean Moulin;\r\n"
    "TITLE:Principale\r\nUID:navigateur-1\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Hugo Bernard\r\nEMAIL:hugo.bernard@example.org\r\nEND:VCARD\r\n"
)


def test_vcard_import_refuses_malformed_files_then_imports_and_exports(
    platform, page, activated_account, tmp_path
):
    address, password = activated_account("Carnet")
    login(page, address, password)
    page.goto("/contacts")
    page.get_by_role("link", name="Importer (.vcf)").click()

    # A truncated file and a file with a bad address: French errors, nothing written.
    for name, content, expected in (
        ("tronque.vcf", CARDS[:120], "mal formé ou tronqué"),
        (
            "adresse.vcf",
            CARDS.replace("hugo.bernard@example.org", "hugo.bernard@"),
            "adresse électronique invalide",
        ),
    ):
        (tmp_path / name).write_text(content, encoding="utf-8")
        page.get_by_label("Fichier de contacts").set_input_files(str(tmp_path / name))
        page.get_by_role("button", name="Vérifier le fichier").click()
        alert = page.locator("#erreur-import")
        expect(alert).to_contain_text(expected)
        expect(alert).to_contain_text("aucun contact n'a été ajouté ni modifié")
        assert axe_violations(page) == []
    page.goto("/contacts")
    expect(page.locator("#nombre-contacts")).to_have_text("0 contact")

    # A good file: the preview, then the import.
    (tmp_path / "carnet.vcf").write_text(CARDS, encoding="utf-8")
    page.get_by_role("link", name="Importer (.vcf)").click()
    page.get_by_label("Fichier de contacts").set_input_files(str(tmp_path / "carnet.vcf"))
    page.get_by_role("button", name="Vérifier le fichier").click()
    expect(page.locator("#resume-import")).to_contain_text("2 nouveaux contacts à ajouter")
    expect(page.get_by_text("Élodie Durand")).to_be_visible()
    assert ContactBook(platform["db"]).count(address) == 0  # nothing written before the confirmation
    page.get_by_role("button", name="Importer", exact=True).click()
    expect(page.get_by_text("Import terminé : 2 contacts ajoutés, 0 mis à jour, 0 inchangé.")).to_be_visible()
    expect(page.locator("#nombre-contacts")).to_have_text("2 contacts")
    expect(page.get_by_role("link", name="Élodie Durand", exact=True)).to_be_visible()

    # Export of everything.
    with page.expect_download() as info:
        page.get_by_role("link", name="Exporter tout (.vcf)").click()
    exported = tmp_path / "export.vcf"
    info.value.save_as(exported)
    data = exported.read_text(encoding="utf-8")
    assert data.count("BEGIN:VCARD") == 2 and "elodie.durand@ac-montpellier.fr" in data
