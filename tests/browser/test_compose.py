"""Writing mail in a real browser against the whole platform: address book completion, attachments
uploaded with progress, sending through ingest's submission port (the webmail's proxy login), reading on
the other side, reply, forward with the original's attachment, automatic drafts, the address book."""

from __future__ import annotations

import re
import time
import uuid

from playwright.sync_api import expect

from tests.browser.conftest import axe_violations, login, screenshot

ATTACHMENT = "Bonjour Louis,\nvoici le compte rendu du conseil pédagogique.\n".encode() * 50


def wait_for_message(page, folder: str, subject: str, timeout: float = 90) -> None:
    """Reload `folder` until a message `subject` is listed (the pipeline delivers in a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(f"/courrier/{folder}")
        if page.get_by_role("link", name=subject, exact=True).count():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject!r} never arrived in {folder}")
        time.sleep(1)


def open_message(page, folder: str, subject: str):
    wait_for_message(page, folder, subject)
    page.get_by_role("link", name=subject, exact=True).first.click()
    expect(page.get_by_role("heading", level=1, name=subject)).to_be_visible()


def test_write_send_read_reply_forward(platform, browser, page, tmp_path):
    people, password = platform["people"], platform["password"]
    subject = f"Compte rendu du conseil {uuid.uuid4().hex[:6]}"
    document = tmp_path / "compte-rendu conseil.txt"
    document.write_bytes(ATTACHMENT)

    # Camille writes to Louis, found through the address book completion, with an attachment.
    login(page, people["Camille"], password)
    page.goto("/ecrire")
    to = page.get_by_label("À", exact=False).first
    to.fill("Garcia")
    option = page.get_by_role("option", name=re.compile(re.escape(people["Louis"])))
    expect(option).to_be_visible()
    assert axe_violations(page) == []
    screenshot(page, "ecrire")  # with the address book suggestions open
    option.click()
    expect(to).to_have_value(re.compile(re.escape(f"<{people['Louis']}>") + r", $"))
    page.get_by_label("Objet").fill(subject)
    page.get_by_label("Message").fill("Bonjour Louis,\n\nvoici le compte rendu.\n\nCamille")
    page.get_by_label("Ajouter des fichiers").set_input_files(str(document))
    expect(page.get_by_role("checkbox", name=re.compile("compte-rendu conseil.txt"))).to_be_checked()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Envoyer").click()
    page.wait_for_url("**/courrier/INBOX")
    expect(page.get_by_text("Message envoyé.")).to_be_visible()
    wait_for_message(page, "Sent", subject)  # delivery files the Sent copy of a submission

    # Louis reads it, with its attachment, and replies.
    louis = browser.new_context(base_url=platform["url"], locale="fr-FR")
    louis.set_default_timeout(15_000)
    louis_page = louis.new_page()
    login(louis_page, people["Louis"], password)
    open_message(louis_page, "INBOX", subject)
    expect(louis_page.get_by_role("link", name=re.compile("compte-rendu conseil.txt"))).to_be_visible()
    louis_page.get_by_role("link", name="Répondre", exact=True).click()
    expect(louis_page.get_by_label("Objet")).to_have_value(f"Re: {subject}")
    body = louis_page.get_by_label("Message").input_value()
    assert re.search(r"Le \w+ \d+ \w+ 20\d\d à \d\d:\d\d, Camille MARTIN a écrit :\n", body, re.I), body
    assert "> voici le compte rendu." in body
    louis_page.get_by_label("Message").press("Control+Home")
    louis_page.get_by_label("Message").type("Merci Camille, bien reçu.")
    louis_page.get_by_role("button", name="Envoyer").click()
    louis_page.wait_for_url("**/courrier/INBOX")
    open_message(page, "INBOX", f"Re: {subject}")

    # Louis forwards the original, attachment included, to Alice.
    open_message(louis_page, "INBOX", subject)
    louis_page.get_by_role("link", name="Transférer").click()
    expect(louis_page.get_by_label("Objet")).to_have_value(f"TR: {subject}")
    expect(louis_page.get_by_role("checkbox", name=re.compile("compte-rendu conseil.txt"))).to_be_checked()
    louis_page.get_by_label("À", exact=False).first.fill(people["Alice"])
    louis_page.get_by_role("button", name="Envoyer").click()
    louis_page.wait_for_url("**/courrier/INBOX")
    louis.close()

    # Alice receives the forwarded attachment, byte for byte.
    alice = browser.new_context(base_url=platform["url"], locale="fr-FR", accept_downloads=True)
    alice.set_default_timeout(15_000)
    alice_page = alice.new_page()
    login(alice_page, people["Alice"], password)
    open_message(alice_page, "INBOX", f"TR: {subject}")
    with alice_page.expect_download() as download:
        alice_page.get_by_role("link", name=re.compile("compte-rendu conseil.txt")).click()
    assert download.value.path().read_bytes() == ATTACHMENT
    alice.close()


def test_a_draft_is_saved_automatically_and_resumed(platform, page):
    people = platform["people"]
    subject = f"Brouillon automatique {uuid.uuid4().hex[:6]}"
    login(page, people["Camille"], platform["password"])
    page.goto(f"/ecrire?a={people['Alice']}")
    page.get_by_label("Objet").fill(subject)
    page.get_by_label("Message").fill("Un texte commencé, pas encore fini.")
    expect(page.locator("#etat-brouillon")).to_contain_text("Brouillon enregistré à", timeout=25_000)
    draft_id = page.locator("#champ-brouillon").input_value()
    assert draft_id
    wait_for_message(page, "Drafts", subject)

    page.goto(f"/ecrire?brouillon={draft_id}")
    expect(page.get_by_label("Objet")).to_have_value(subject)
    expect(page.get_by_label("Message")).to_have_value(re.compile("Un texte commencé, pas encore fini."))
    expect(page.get_by_label("À", exact=False).first).to_have_value(people["Alice"])
    page.get_by_role("button", name="Envoyer").click()
    page.wait_for_url("**/courrier/INBOX")
    page.goto("/courrier/Drafts")
    expect(page.get_by_role("link", name=subject, exact=True)).to_have_count(0)


def test_the_address_book(platform, page):
    people = platform["people"]
    login(page, people["Camille"], platform["password"])
    page.goto("/annuaire")
    page.get_by_label("Nom").fill("Garcia")
    page.get_by_role("button", name="Rechercher").click()
    row = page.get_by_role("row", name=re.compile(re.escape(people["Louis"])))
    expect(row).to_be_visible()
    assert axe_violations(page) == []
    screenshot(page, "annuaire")
    row.get_by_role("link", name=re.compile("^Louis")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Louis")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Écrire", exact=True).click()
    expect(page.get_by_label("À", exact=False).first).to_have_value(people["Louis"])
