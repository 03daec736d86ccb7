"""Browser tests of authentication on the real platform: first login with the NUMEN and the forced change
(with live policy feedback), refusals (maintenance, deleted account), the lost-password flow through the
mailed link, the sessions page and the help page — with screenshots and axe-core checks."""

from __future__ import annotations

import hashlib
import re
import time
import uuid

from tests.browser.conftest import axe_violations, login, screenshot

NEW_PASSWORD = "Garrigue-Cevennes-2027?"
RESET_PASSWORD = "Tramontane-Canigou-2028!"


def assert_accessible(page) -> None:
    violations = axe_violations(page)
    assert not violations, violations


def session_doc(page, platform) -> dict:
    """The server-side session of the page's browser (read from the database, as only a test can)."""
    cookie = next(c for c in page.context.cookies() if c["name"].endswith("webmail"))
    return platform["db"].webmail_sessions.find_one(
        {"_id": hashlib.sha256(cookie["value"].encode()).hexdigest()}
    )


def test_login_page(page, platform):
    page.goto("/connexion")
    assert page.get_by_role("heading", level=1).inner_text() == "Connexion au webmail académique"
    screenshot(page, "connexion")
    assert_accessible(page)
    page.get_by_role("link", name="En savoir plus sur la première connexion").click()
    page.wait_for_url("**/premiere-connexion")
    assert_accessible(page)


def test_first_login_with_the_numen_then_forced_change(page, platform, new_account):
    address, numen, _ = new_account("Hélène")
    page.goto("/connexion")
    page.get_by_label("Identifiant").fill(address)
    page.get_by_label("Mot de passe", exact=True).fill(numen)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/premiere-connexion/mot-de-passe")
    page.locator("#numen-input").fill(numen)
    # Live feedback: a weak password is explained as it is typed.
    page.locator("#nouveau-input").press_sequentially("azerty", delay=20)
    messages = page.locator("#nouveau-input-messages")
    messages.get_by_text("trop courant").wait_for()
    assert messages.get_attribute("aria-live") == "polite"
    assert messages.locator(".fr-message--error").count() >= 1
    screenshot(page, "premiere-connexion")
    assert_accessible(page)
    before = session_doc(page, platform)["_id"]
    page.locator("#nouveau-input").fill(NEW_PASSWORD)
    page.locator("#nouveau-input").dispatch_event("input")
    messages.get_by_text("Mot de passe conforme").wait_for()
    page.locator("#confirmation-input").fill(NEW_PASSWORD)
    page.locator("#confirmation-input").dispatch_event("input")
    page.locator("#confirmation-input-messages").get_by_text("Les deux saisies correspondent").wait_for()
    page.get_by_role("button", name="Enregistrer mon mot de passe").click()
    page.wait_for_url("**/courrier/**")
    after = session_doc(page, platform)
    assert after["_id"] != before and not after["must_change_password"]
    # Log out, then in with the new password.
    page.get_by_role("button", name="Se déconnecter").first.click()
    page.wait_for_url("**/connexion?motif=deconnexion")
    assert "Vous êtes déconnecté" in page.locator("main").inner_text()
    login(page, address, NEW_PASSWORD)


def test_maintenance_refusal(page, platform, activated_account):
    address, password = activated_account("Louise")
    message = "Migration des boîtes aux lettres : retour prévu à 14 h."
    platform["directory"].set_maintenance(True, message)
    try:
        page.goto("/connexion")
        assert message in page.locator("#maintenance").inner_text()
        page.get_by_label("Identifiant").fill(address)
        page.get_by_label("Mot de passe", exact=True).fill(password)
        page.get_by_role("button", name="Se connecter").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert message in alert.inner_text()
        assert page.get_by_label("Identifiant").input_value() == address
        assert_accessible(page)
    finally:
        platform["directory"].set_maintenance(False)


def test_deleted_account_refusal(page, platform, activated_account):
    address, password = activated_account("Marius")
    platform["directory"].admin("delete", address, "départ à la retraite")
    page.goto("/connexion")
    page.get_by_label("Identifiant").fill(address)
    page.get_by_label("Mot de passe", exact=True).fill(password)
    page.get_by_role("button", name="Se connecter").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "supprimé par le rectorat" in alert.inner_text()
    alert.get_by_role("link", name=re.compile("Qui contacter")).click()
    page.wait_for_url("**/aide")


def _reset_link(platform, recovery_address: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for received in platform["smarthost"].received:
            if recovery_address in received.recipients:
                body = received.message.get_body(("plain",)).get_content()
                found = re.search(r"https?://\S+/reinitialisation\?jeton=[A-Za-z0-9_-]+", body)
                assert found, body
                return found.group(0)
        time.sleep(0.5)
    raise AssertionError(f"no reset mail for {recovery_address}")


def test_lost_password_through_the_mailed_link(page, platform, new_account):
    recovery = f"perso.{uuid.uuid4().hex[:8]}@example.org"
    address, numen, person = new_account("Nadia", recovery_address=recovery)
    platform["directory"].change_password(address, numen, platform["password"])
    page.goto("/connexion")
    page.get_by_role("link", name="Mot de passe oublié ?").click()
    page.wait_for_url("**/mot-de-passe/oublie")
    assert page.locator("#captcha-image").get_attribute("alt")
    assert page.locator("#captcha-image").evaluate("img => img.naturalWidth") > 0
    # The screenshot shows the captcha (image, audio version, "Nouvelle image").
    page.locator("#captcha-image").evaluate("img => img.scrollIntoView({block: 'center'})")
    screenshot(page, "mot-de-passe-oublie")
    assert_accessible(page)
    page.get_by_label("Identifiant").fill(address)
    page.locator("#numen-input").fill(numen)
    page.get_by_label("Date de naissance").fill(person.birth_date)  # JJ/MM/AAAA
    # "Nouvelle image" changes the code without losing what was typed.
    first = session_doc(page, platform)["data"]["captcha"]
    page.get_by_role("button", name="Nouvelle image").click()
    page.locator("#captcha-annonce").get_by_text("Nouvelle image").wait_for()
    second = session_doc(page, platform)["data"]["captcha"]
    assert second["expires_at"] != first["expires_at"]
    assert page.get_by_label("Identifiant").input_value() == address
    page.get_by_label("Chiffres de l'image").fill(second["answer"])
    page.get_by_role("button", name="Recevoir un lien de réinitialisation").click()
    assert "adresse de secours" in page.locator("#reponse").inner_text()

    link = _reset_link(platform, recovery)
    page.goto(link)
    assert_accessible(page)
    page.locator("#nouveau-input").fill(RESET_PASSWORD)
    page.locator("#confirmation-input").fill(RESET_PASSWORD)
    page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    page.wait_for_url("**/connexion")
    assert "jeton" not in page.url
    assert "réinitialisé" in page.locator("#annonces").inner_text()
    login(page, address, RESET_PASSWORD)
    # The link served once.
    page.goto(link)
    page.locator("#nouveau-input").fill(RESET_PASSWORD + "x")
    page.locator("#confirmation-input").fill(RESET_PASSWORD + "x")
    page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    assert "plus valable" in page.get_by_role("alert").inner_text()


def test_sessions_and_help_pages(page, platform, browser, activated_account):
    address, password = activated_account("Paul")
    other = browser.new_context(base_url=platform["url"], locale="fr-FR")
    try:
        login(other.new_page(), address, password)
        login(page, address, password)
        page.goto("/sessions")
        rows = page.locator("#table-sessions tbody tr")
        assert rows.count() == 2
        assert "Cette session" in page.locator("tr[aria-current]").text_content()
        screenshot(page, "sessions")
        assert_accessible(page)
        page.get_by_role("button", name="Déconnecter toutes les autres sessions").click()
        page.wait_for_url("**/sessions")
        assert rows.count() == 1
        other_page = other.pages[0]
        other_page.goto("/sessions")
        other_page.wait_for_url("**/connexion**")
    finally:
        other.close()
    page.goto("/aide")
    mine = page.locator(".webmail-mon-departement")
    assert "Votre département" in mine.text_content()
    for name in ("Aude", "Gard", "Hérault", "Lozère", "Pyrénées-Orientales"):
        assert name in page.locator("main").inner_text()
    screenshot(page, "aide")
    assert_accessible(page)


def test_password_change_closes_the_other_sessions(page, platform, browser, activated_account):
    address, password = activated_account("Rose")
    other = browser.new_context(base_url=platform["url"], locale="fr-FR")
    try:
        login(other.new_page(), address, password)
        login(page, address, password)
        page.goto("/mot-de-passe/changer")
        assert_accessible(page)
        page.locator("#actuel-input").fill(password)
        page.locator("#nouveau-input").fill(NEW_PASSWORD)
        page.locator("#confirmation-input").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Changer mon mot de passe").click()
        page.wait_for_url("**/sessions")
        assert "autres sessions ont été fermées" in page.locator("#annonces").inner_text()
        assert page.locator("#table-sessions tbody tr").count() == 1
        other_page = other.pages[0]
        other_page.goto("/sessions")
        other_page.wait_for_url("**/connexion**")
    finally:
        other.close()
