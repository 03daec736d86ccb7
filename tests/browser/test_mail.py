"""Reading mail in a real browser over the whole platform: live arrival, reading, remote images,
spam reports, search, moves, deletion and restoration, flags; screenshots and axe on every mail page."""

from __future__ import annotations

import datetime as dt
import http.server
import smtplib
import threading
import uuid
from email.message import EmailMessage
from typing import ClassVar

import pytest

from tests.browser.conftest import axe_violations, login, screenshot
from tests.helpers import wait_until
from tests.pipeline import EventTap


def send(platform, to: str, subject: str, body: str = "Bonjour,\nvoici le compte rendu.\n", *, html=None,
         sender=("Hélène Durand", "helene.durand@exemple.org")) -> str:  # fmt: skip
    """Send a message to the MX as an outside server would; returns its Message-ID header."""
    message = EmailMessage()
    message["From"] = f"{sender[0]} <{sender[1]}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Thu, 26 Nov 2026 10:00:00 +0100"
    message_id = f"<{uuid.uuid4().hex}@exemple.org>"
    message["Message-ID"] = message_id
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", platform["mx"], timeout=30) as smtp:
        smtp.send_message(message, from_addr=sender[1], to_addrs=[to])
    return message_id


def entry_of(platform, mailbox: str, message_id: str, timeout: float = 90) -> dict:
    """The mailbox entry of a sent message, once delivery filed it."""
    db = platform["db"]
    return wait_until(
        lambda: db.mailbox_entries.find_one({"mailbox": mailbox, "message_id_header": message_id}),
        timeout=timeout,
        what=f"delivery of {message_id}",
    )


def open_folder(page, folder: str = "INBOX") -> None:
    page.goto(f"/courrier/{folder}")
    # the live stream is subscribed: a message delivered from now on shows without reload
    page.wait_for_selector("html[data-direct=pret]", timeout=30_000)


def test_new_mail_appears_live_then_reading_marks_it_read(page, platform):
    camille = platform["people"]["Camille"]
    login(page, camille, platform["password"])
    open_folder(page)
    page.evaluate("window.__sansRechargement = true")
    subject = f"Sortie au musée Fabre {uuid.uuid4().hex[:6]}"
    message_id = send(platform, camille, subject, "Bonjour Camille,\nla sortie est confirmée pour jeudi.\n")
    row = page.locator("#lignes-messages tr", has_text=subject)
    row.wait_for(timeout=90_000)
    assert page.evaluate("window.__sansRechargement") is True  # no reload happened
    entry = entry_of(platform, camille, message_id)
    assert entry["folder"] == "INBOX"
    unread = platform["db"].mailbox_entries.count_documents(
        {"mailbox": camille, "folder": "INBOX", "flags.seen": False}
    )
    badge = page.locator('[data-dossier="INBOX"] .fr-badge')
    assert badge.inner_text() == str(unread)
    assert page.title().startswith(f"({unread}) ")
    assert "Nouveau message de Hélène Durand" in page.locator("#nouveaux-messages").inner_text()
    assert "webmail-ligne--non-lu" in (row.get_attribute("class") or "")
    screenshot(page, "boite-de-reception")
    assert axe_violations(page) == []

    row.get_by_role("link", name=subject).click()
    page.wait_for_url(f"**/courrier/INBOX/{entry['_id']}")
    assert page.get_by_role("heading", level=1, name=subject).is_visible()
    assert "la sortie est confirmée pour jeudi" in page.locator(".webmail-corps").inner_text()
    assert "Hélène Durand <helene.durand@exemple.org>" in page.locator(".webmail-entetes").inner_text()
    assert platform["db"].mailbox_entries.find_one({"_id": entry["_id"]})["flags"]["seen"] is True
    screenshot(page, "lecture")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Retour à « Boîte de réception »").click()
    assert "webmail-ligne--non-lu" not in (
        page.locator("#lignes-messages tr", has_text=subject).get_attribute("class") or ""
    )


class _Pixel(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
                         b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")  # fmt: skip

    def log_message(self, *args):
        pass


@pytest.fixture
def tracker():
    """A remote image server that records every request (a tracking pixel)."""
    _Pixel.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pixel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Pixel.hits
    server.shutdown()


def test_remote_images_stay_blocked_until_the_reader_asks(page, platform, activated_account, tracker):
    base, hits = tracker
    address, password = activated_account("Ines")
    subject = f"Lettre d'information {uuid.uuid4().hex[:6]}"
    html = (
        f'<p>Bonjour,</p><p>Voici notre <b>lettre</b>.</p><img src="{base}/pixel.gif?u=ines" alt="pixel de suivi">'
        '<p><a href="https://www.ac-montpellier.fr/">Site de l\'académie</a></p><script>document.title="pirate"</script>'
    )
    message_id = send(platform, address, subject, "Version texte de la lettre.", html=html)
    entry = entry_of(platform, address, message_id)
    login(page, address, password)
    page.goto(f"/courrier/{entry['folder']}/{entry['_id']}")
    frame = page.frame_locator("iframe.webmail-corps__cadre")
    frame.locator("text=Voici notre").wait_for()
    assert frame.locator("img").get_attribute("src") is None
    assert frame.locator("a", has_text="Site de l'académie").get_attribute("rel") == "noopener noreferrer"
    assert frame.locator("script").count() == 0
    page.wait_for_timeout(500)
    assert hits == []
    assert page.get_by_text("Les images distantes de ce message ont été bloquées").is_visible()
    page.get_by_role("link", name="Afficher les images").click()
    frame = page.frame_locator("iframe.webmail-corps__cadre")
    frame.locator("text=Voici notre").wait_for()
    assert frame.locator("img").get_attribute("src") == f"{base}/pixel.gif?u=ines"
    wait_until(lambda: hits, timeout=10, what="the remote image once allowed")
    assert "pirate" not in page.title()
    assert axe_violations(page) == []


def test_report_as_spam_moves_to_junk_and_tells_the_spam_service(page, platform, activated_account):
    address, password = activated_account("Jules")
    subject = f"Offre exceptionnelle {uuid.uuid4().hex[:6]}"
    message_id = send(platform, address, subject, "Bonjour, une offre pour vous.",
                      sender=("Promo", "promo@vendeur.example"))  # fmt: skip
    entry = entry_of(platform, address, message_id)
    if entry["folder"] != "INBOX":
        pytest.skip(f"the test model filed the message in {entry['folder']}")
    tap = EventTap("mail.feedback")
    try:
        login(page, address, password)
        page.goto(f"/courrier/INBOX/{entry['_id']}")
        page.get_by_role("button", name="Signaler comme indésirable").click()
        page.wait_for_url("**/courrier/INBOX")
        assert "signalé(s) comme indésirable(s)" in page.locator("#annonces").inner_text()
        assert platform["db"].mailbox_entries.find_one({"_id": entry["_id"]})["folder"] == "Junk"
        event = wait_until(tap.get, timeout=15, what="mail.feedback")
        assert event["payload"]["label"] == "spam"
        assert event["payload"]["message_id"] == entry["message_id"]
        assert event["payload"]["sender"] == "promo@vendeur.example"
        assert event["payload"]["mailbox"] == address
        page.goto("/courrier/Junk")
        assert page.locator("#lignes-messages tr", has_text=subject).is_visible()
        assert axe_violations(page) == []
        page.goto(f"/courrier/Junk/{entry['_id']}")
        page.get_by_role("button", name="Ce n'est pas un indésirable").click()
        page.wait_for_url("**/courrier/Junk")
        assert platform["db"].mailbox_entries.find_one({"_id": entry["_id"]})["folder"] == "INBOX"
        event = wait_until(tap.get, timeout=15, what="mail.feedback (ham)")
        assert event["payload"]["label"] == "ham"
    finally:
        tap.close()


def test_search_by_sender_subject_body_and_dates(page, platform, activated_account):
    address, password = activated_account("Lea")
    tag = uuid.uuid4().hex[:6]
    ids = {
        "conseil": send(platform, address, f"Conseil de classe {tag}", "Le conseil aura lieu jeudi.",
                        sender=("Paul Roux", "paul.roux@exemple.org")),
        "sortie": send(platform, address, f"Sortie scolaire {tag}", "Le car part devant le gymnase Pierre-de-Coubertin.",
                       sender=("Hélène Durand", "helene.durand@exemple.org")),
        "ancien": send(platform, address, f"Rentrée {tag}", "Les emplois du temps sont en ligne.",
                       sender=("Secrétariat", "secretariat@exemple.org")),
    }  # fmt: skip
    entries = {key: entry_of(platform, address, mid) for key, mid in ids.items()}
    # an older message: as if it had arrived at the start of the school year
    platform["db"].mailbox_entries.update_one(
        {"_id": entries["ancien"]["_id"]},
        {"$set": {"received_at": dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)}},
    )
    login(page, address, password)

    def search(**fields) -> list[str]:
        page.goto("/courrier/recherche")
        labels = {"q": "Mots", "de": "De", "objet": "Objet", "depuis": "Reçu depuis le", "jusqua": "Jusqu'au"}
        for name, value in fields.items():
            page.locator(f"#recherche-{name}").fill(value)
            assert page.get_by_label(labels[name], exact=False).first
        page.locator("#formulaire-recherche").get_by_role("button", name="Rechercher").click()
        page.wait_for_url("**/courrier/recherche?**")
        return sorted(
            t.strip() for t in page.locator("#lignes-messages .webmail-lien-message").all_inner_texts()
        )

    assert search(de="roux") == [f"Conseil de classe {tag}"]
    assert search(objet="sortie", q=tag) == [f"Sortie scolaire {tag}"]
    assert search(q="coubertin") == [f"Sortie scolaire {tag}"]
    assert search(q="gymnase pierre") == [f"Sortie scolaire {tag}"]
    assert search(q=tag, depuis="2026-08-25", jusqua="2026-09-05") == [f"Rentrée {tag}"]
    assert search(q=tag, depuis="2026-10-01") == sorted(
        [f"Conseil de classe {tag}", f"Sortie scolaire {tag}"]
    )
    assert search(q="helene", objet="conseil") == []
    search(q=tag)
    assert "3 résultats" in page.locator("#resultats").inner_text()
    screenshot(page, "recherche")
    assert axe_violations(page) == []


def test_flag_move_delete_restore_and_delete_for_good(page, platform, activated_account):
    address, password = activated_account("Noe")
    tag = uuid.uuid4().hex[:6]
    subject = f"Projet Erasmus {tag}"
    entry = entry_of(platform, address, send(platform, address, subject, "Le dossier Erasmus est à rendre."))
    db = platform["db"]

    def folder_of() -> str:
        return db.mailbox_entries.find_one({"_id": entry["_id"]})["folder"]

    login(page, address, password)
    page.goto("/courrier/INBOX")

    def select(subject_text: str) -> None:
        row = page.locator("#lignes-messages tr", has_text=subject_text)
        row.locator("input[type=checkbox]").check(force=True)

    select(subject)
    page.get_by_role("button", name="Suivre", exact=True).click()
    page.wait_for_url("**/courrier/INBOX")
    assert db.mailbox_entries.find_one({"_id": entry["_id"]})["flags"]["flagged"] is True
    assert page.locator("#lignes-messages tr", has_text=subject).locator(".webmail-icone-suivi").count() == 1

    # own folder, then move into it
    page.goto("/courrier/dossiers")
    page.get_by_label("Nom du nouveau dossier").fill("Projets européens")
    page.get_by_role("button", name="Créer le dossier").click()
    page.wait_for_url("**/courrier/u-*")
    assert axe_violations(page) == []
    page.goto("/courrier/INBOX")
    select(subject)
    page.get_by_label("Déplacer vers").select_option(label="Projets européens")
    page.get_by_role("button", name="Déplacer", exact=True).click()
    page.wait_for_url("**/courrier/INBOX")
    assert folder_of().startswith("u-")
    page.get_by_role("link", name="Projets européens").first.click()
    assert page.locator("#lignes-messages tr", has_text=subject).is_visible()

    # delete: to Trash, restored to the folder it came from, then deleted for good
    select(subject)
    page.get_by_role("button", name="Supprimer", exact=True).click()
    assert folder_of() == "Trash"
    page.goto("/courrier/Trash")
    assert axe_violations(page) == []
    select(subject)
    page.get_by_role("button", name="Restaurer").click()
    page.wait_for_url("**/courrier/Trash")
    assert folder_of().startswith("u-")
    used = db.mailboxes.find_one({"_id": address})["used_bytes"]
    page.goto(f"/courrier/{folder_of()}")
    select(subject)
    page.get_by_role("button", name="Supprimer", exact=True).click()
    page.goto("/courrier/Trash")
    select(subject)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Supprimer définitivement").click()
    page.wait_for_url("**/courrier/Trash")
    assert db.mailbox_entries.find_one({"_id": entry["_id"]}) is None
    assert db.mailboxes.find_one({"_id": address})["used_bytes"] == used - entry["size"]


def test_phone_layout_collapses_the_folders(page, platform):
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, platform["people"]["Camille"], platform["password"])
    page.goto("/courrier/INBOX")
    assert not page.locator("#liste-dossiers").is_visible()
    page.get_by_role("button", name="Dossiers").click()
    page.get_by_role("link", name="Corbeille").wait_for(state="visible")
    page.get_by_role("link", name="Corbeille").click()
    page.wait_for_url("**/courrier/Trash")
    assert axe_violations(page) == []
