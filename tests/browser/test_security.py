"""Security tests of the webmail on the real platform, in chromium.

- No script ever runs from what a sender controls: every payload of tests/data/xss_payloads.txt (with
  the vectors of Roundcube's published XSS CVEs) goes over real SMTP in the HTML body, the plain-text
  body, the Subject, the From display name and an attachment's filename; the folder lists, the reader,
  the body frame (with and without remote images), the search page and the attachment downloads are
  opened in chromium, and the test fails on any dialog, any `window.__xss`, any request reaching a
  local canary listener, any markup of the payload alive in our pages' DOM, any script the browser had
  to block, and any CSP error about our own /static/ files (a CSP regression of the app itself).
- Cross-site requests are refused: an auto-submitting form on another origin, a foreign `Origin`, no
  `Origin`/`Referer`, no CSRF token — 403 and nothing changed.
- One user cannot reach another's messages by id on any mail route: 404, as for an id that does not
  exist, and the other's entry unchanged in the database.
- Session ids change at login and after the first-login password change; logout kills the old cookie
  server-side; the cookie is `__Host-`, Secure, HttpOnly, SameSite=Lax, Path=/, without Domain; pages
  carry `webmail.security.CSP`, the body frame `message_body_csp`.
"""

from __future__ import annotations

import hashlib
import html.parser
import http.server
import re
import smtplib
import threading
import urllib.parse
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from tests.browser.conftest import PASSWORD, login
from tests.helpers import wait_until
from webmail.security import CSP, message_body_csp

PAYLOADS_FILE = Path(__file__).resolve().parents[1] / "data" / "xss_payloads.txt"
OUTSIDE_SENDER = "expediteur@exemple.org"
NEW_PASSWORD = "Causse-Larzac-2029;Aigoual"

#: Content types a browser would render (and run script in) if an attachment were served inline.
RENDERABLE = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml")

#: Markup of a payload that must never be alive in one of our pages (outside the sandboxed body frame).
DOM_PROBE = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (name.startsWith('on')) found.push(`${el.tagName} ${name}`);
      if (['href', 'src', 'action', 'formaction', 'xlink:href', 'data'].includes(name)
          && (value.startsWith('javascript:') || value.startsWith('data:text/html'))) {
        found.push(`${el.tagName} ${name}=${attr.value}`);
      }
    }
  }
  for (const el of document.querySelectorAll('script')) {
    if (!el.src || new URL(el.src).origin !== location.origin || !new URL(el.src).pathname.startsWith('/static/')) {
      found.push(`script ${el.src || el.textContent.slice(0, 60)}`);
    }
  }
  for (const el of document.querySelectorAll('iframe')) {
    if (!/^\\/courrier\\/message\\/[^/]+\\/corps/.test(new URL(el.src, location.href).pathname)) {
      found.push(`iframe ${el.src}`);
    }
  }
  for (const sel of ['object', 'embed', 'base', 'meta[http-equiv]', 'svg animate', 'svg set', 'svg use',
                     'math', 'marquee', 'link[rel=stylesheet]:not([href^="/static/"])']) {
    for (const el of document.querySelectorAll(sel)) found.push(`${sel}: ${el.outerHTML.slice(0, 80)}`);
  }
  if (window.__xss) found.push('window.__xss set');
  return found;
}"""


def letters() -> str:
    """A random suffix of letters (names may hold letters, spaces, hyphens and apostrophes only)."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:8])


def load_payloads() -> list[str]:
    lines = PAYLOADS_FILE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


# --- helpers ---------------------------------------------------------------------------------------------


class _Canary(http.server.BaseHTTPRequestHandler):
    """Records every request: a mail that makes the browser talk to it leaked (or ran script)."""

    hits: list[str] = []  # noqa: RUF012 - one listener per test module

    def _hit(self):
        type(self).hits.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

    do_GET = do_POST = _hit

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def canary():
    _Canary.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Canary.hits
    server.shutdown()


def make_account(platform, first_name: str) -> str:
    """An activated account (module-scoped tests cannot use the function-scoped fixture)."""
    from directory.testing import make_numen, make_person

    numen = make_numen()
    person = make_person(first_name=first_name, last_name="Secu" + letters(), numen=numen)
    ok, message, account = platform["directory"].create_account(person)
    assert ok, message
    change = platform["directory"].change_password(account.address, numen, PASSWORD)
    assert change.ok, change
    return account.address


def send(platform, message: EmailMessage, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", platform["mx"], timeout=60) as smtp:
        smtp.send_message(message, from_addr=OUTSIDE_SENDER, to_addrs=[to])


def mail(to: str, subject: str, text: str = "Bonjour,\n", html: str | None = None, name: str = "Expéditeur"):
    message = EmailMessage()
    try:
        message["From"] = Address(display_name=name, addr_spec=OUTSIDE_SENDER)
    except Exception:  # noqa: BLE001 - a display name the header registry refuses: raw header instead
        message["From"] = f"{name} <{OUTSIDE_SENDER}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@exemple.org>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def entries_of(platform, address: str) -> list[dict]:
    """The entries of `address` that the tests sent (not the platform's own notices to the account)."""
    return list(platform["db"].mailbox_entries.find({"mailbox": address, "envelope_from": OUTSIDE_SENDER}))


def cookie_of(context) -> tuple[str, str]:
    cookie = next(c for c in context.cookies() if c["name"].endswith("webmail"))
    return cookie["name"], cookie["value"]


def csrf_of(page) -> str:
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


def raw_get(platform, path: str, cookie: tuple[str, str] | None, **headers) -> requests.Response:
    """A GET outside the browser (its `__Host-` cookie is Secure: requests would not send it on http)."""
    if cookie:
        headers["Cookie"] = f"{cookie[0]}={cookie[1]}"
    return requests.get(platform["url"] + path, headers=headers, allow_redirects=False, timeout=60)


def raw_post(platform, path: str, cookie, data, **headers) -> requests.Response:
    if cookie:
        headers["Cookie"] = f"{cookie[0]}={cookie[1]}"
    return requests.post(
        platform["url"] + path, data=data, headers=headers, allow_redirects=False, timeout=60
    )


class Watch:
    """What a page did that it must not: dialogs, blocked scripts, CSP errors about our own files."""

    def __init__(self, page):
        self.dialogs: list[str] = []
        self.blocked_scripts: list[str] = []
        self.static_csp: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)

    def _dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, message):
        text = message.text
        if "Content Security Policy" in text and "/static/" in text:
            self.static_csp.append(text)
        if re.search(r"Refused to (execute|load the script)|Blocked script execution", text):
            self.blocked_scripts.append(f"{message.location.get('url', '')}: {text[:200]}")

    def check(self, where: str) -> None:
        assert not self.dialogs, f"{where}: a script ran and opened a dialog: {self.dialogs}"
        assert not self.static_csp, f"{where}: the CSP blocked the webmail's own files: {self.static_csp}"
        assert not self.blocked_scripts, (
            f"{where}: a payload's script reached the page: {self.blocked_scripts}"
        )


def assert_no_live_payload(page, where: str) -> None:
    for frame in page.frames:
        try:
            found = (
                frame.evaluate(DOM_PROBE)
                if frame == page.main_frame
                else frame.evaluate("() => !!window.__xss")
            )
        except Exception:  # noqa: BLE001 - a frame that navigated away meanwhile
            continue
        if frame == page.main_frame:
            assert not found, f"{where}: payload markup alive in the page: {found}"
        else:
            assert not found, f"{where}: window.__xss set in frame {frame.url}"


# --- 1. no script from mail -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xss_mailbox(platform, canary):
    """An account that received every payload in every sender-controlled place, over real SMTP."""
    base, _ = canary
    address = make_account(platform, "Victime")
    payloads = load_payloads()
    refused = []
    for index, payload in enumerate(payloads):
        filled = payload.replace("{canary}", f"{base}/p{index}")
        message = mail(
            address,
            subject=filled,
            text=f"Texte {index} :\n{filled}\n",
            html=f"<html><body><p>Message {index}</p>{filled}</body></html>",
            name=filled[:70],
        )
        message.add_attachment(b"%PDF-1.4\n", "application", "pdf", filename=filled[:120] or "vide.pdf")
        try:
            send(platform, message, address)
        except smtplib.SMTPException as exc:
            refused.append((index, payload, str(exc)))
    # CVE-2020-35730 / CVE-2023-43770: plain-text only bodies with markup and links.
    text_only = "\n".join(p.replace("{canary}", f"{base}/texte") for p in payloads)
    send(platform, mail(address, "Texte seul", text=text_only), address)
    # CVE-2024-42008: attachments a browser would render, and run, if served inline.
    script = f"<script>alert(1);window.__xss=1;fetch('{base}/piece')</script>".encode()
    dangerous = mail(address, "Pièces jointes dangereuses")
    dangerous.add_attachment(
        b"<html><body>" + script + b"</body></html>", "text", "html", filename="page.html"
    )
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">' + script + b"</svg>"
    dangerous.add_attachment(svg, "image", "svg+xml", filename="image.svg")
    dangerous.add_attachment(b"<html xmlns='http://www.w3.org/1999/xhtml'>" + script + b"</html>", "application",
                             "xhtml+xml", filename="page.xhtml")  # fmt: skip
    dangerous.add_attachment(script, "text", "plain", filename="deguise.txt")
    dangerous.add_attachment(script, "image", "png", filename="faux.png")
    send(platform, dangerous, address)
    expected = len(payloads) - len(refused) + 2
    assert len(refused) <= len(payloads) // 10, f"the MX refused too many payload mails: {refused}"
    wait_until(
        lambda: len(entries_of(platform, address)) >= expected, timeout=600, what="delivery of the payloads"
    )
    return address, entries_of(platform, address)


def test_no_script_runs_from_mail_lists_reader_and_body(browser, platform, xss_mailbox, canary):
    address, entries = xss_mailbox
    _, hits = canary
    context = browser.new_context(base_url=platform["url"], viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        watch = Watch(page)
        login(page, address, PASSWORD)
        folders = sorted({entry["folder"] for entry in entries})
        for folder in folders:
            count = sum(1 for entry in entries if entry["folder"] == folder)
            for number in range(1, (count + 49) // 50 + 1):
                page.goto(f"/courrier/{folder}?page={number}")
                page.wait_for_load_state("load")
                assert_no_live_payload(page, f"list {folder} page {number}")
                watch.check(f"list {folder} page {number}")
        for entry in entries:
            page.goto(f"/courrier/{entry['folder']}/{entry['_id']}")
            page.wait_for_load_state("load")
            where = f"reader of {entry['subject'][:60]!r}"
            assert_no_live_payload(page, where)
            watch.check(where)
        assert not hits, f"a mail made the browser reach the outside with images off: {hits}"
        # The body frame's document, opened at the top level, with and without remote images.
        for entry in entries:
            for images in (0, 1):
                page.goto(f"/courrier/message/{entry['_id']}/corps?images={images}")
                page.wait_for_load_state("load")
                watch.check(f"body of {entry['subject'][:60]!r}, images={images}")
                assert not page.evaluate("() => !!window.__xss")
        # With images allowed, only images may have been fetched — never a script, a style sheet, a form.
        not_images = [hit for hit in hits if not re.search(r"\.(gif|png)$", hit)]
        assert not not_images, f"remote requests other than images once allowed: {not_images}"
    finally:
        context.close()


FORBIDDEN_TAGS = {"script", "iframe", "frame", "object", "embed", "base", "meta", "form", "link", "svg", "math",
                  "style", "animate", "set", "use", "input", "button", "textarea", "select"}  # fmt: skip
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "data",
    "background",
    "poster",
    "srcset",
}


class _Markup(html.parser.HTMLParser):
    """Tags and attributes as an HTML parser sees them (text that merely looks like markup is not)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


def active_markup(fragment: str, remote_images_allowed: bool) -> list[str]:
    parser = _Markup()
    parser.feed(fragment)
    problems = []
    for tag, attrs in parser.tags:
        if tag in FORBIDDEN_TAGS:
            problems.append(f"<{tag}>")
        for name, value in attrs:
            plain = re.sub(r"[\s\x00-\x1f]", "", value or "").lower()
            if name.startswith("on"):
                problems.append(f"<{tag} {name}>")
            if name in URL_ATTRIBUTES and plain.startswith(("javascript:", "vbscript:", "data:text/html")):
                problems.append(f"<{tag} {name}={value}>")
            if (
                name in URL_ATTRIBUTES - {"href"}
                and not remote_images_allowed
                and plain.startswith(("http", "//"))
            ):
                problems.append(f"remote <{tag} {name}={value}> with images off")
    return problems


def test_sanitised_bodies_carry_no_active_markup(browser, platform, xss_mailbox):
    """The body route's HTML itself, whatever the browser would do with it (CSP and sandbox aside)."""
    address, entries = xss_mailbox
    context = browser.new_context(base_url=platform["url"])
    try:
        page = context.new_page()
        login(page, address, PASSWORD)
        for entry in entries:
            for images in (0, 1):
                response = context.request.get(f"/courrier/message/{entry['_id']}/corps?images={images}")
                assert response.status == 200
                assert response.headers["content-security-policy"] == message_body_csp(bool(images))
                # Only what follows <body> comes from the mail (the head is the webmail's own wrapper).
                fragment = response.text().split("<body>", 1)[-1]
                where = f"body of {entry['subject'][:60]!r} (images={images})"
                problems = active_markup(fragment, remote_images_allowed=bool(images))
                assert not problems, (where, problems)
    finally:
        context.close()


def test_attachments_are_downloads_never_rendered(browser, platform, xss_mailbox, canary):
    """CVE-2024-42008: an attachment is never served as something the browser renders in our origin."""
    address, entries = xss_mailbox
    _, hits = canary
    context = browser.new_context(base_url=platform["url"], accept_downloads=True)
    try:
        page = context.new_page()
        watch = Watch(page)
        login(page, address, PASSWORD)
        checked = 0
        for entry in entries:
            for attachment in entry.get("attachments", []):
                response = context.request.get(f"/courrier/message/{entry['_id']}/piece/{attachment['part']}")
                assert response.status == 200, attachment
                disposition = response.headers.get("content-disposition", "")
                assert disposition.startswith("attachment"), (attachment, disposition)
                assert response.headers.get("x-content-type-options") == "nosniff"
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                assert content_type not in RENDERABLE, (attachment, content_type)
                assert "\n" not in disposition and "\r" not in disposition
                checked += 1
        assert checked >= 5
        dangerous = next(e for e in entries if e["subject"] == "Pièces jointes dangereuses")
        for attachment in dangerous["attachments"]:
            url = f"/courrier/message/{dangerous['_id']}/piece/{attachment['part']}"
            page.goto(f"/courrier/{dangerous['folder']}/{dangerous['_id']}")
            with page.expect_download() as download:
                page.evaluate(
                    "url => { const a = document.createElement('a'); a.href = url; document.body.append(a); a.click(); }",
                    url,
                )
            assert download.value.suggested_filename
            watch.check(f"download of {attachment['filename']}")
        assert not any("/piece" in hit for hit in hits), hits
    finally:
        context.close()


def test_search_page_reflects_no_markup(browser, platform, xss_mailbox):
    address, _ = xss_mailbox
    context = browser.new_context(base_url=platform["url"])
    try:
        page = context.new_page()
        watch = Watch(page)
        login(page, address, PASSWORD)
        for query in ["script", "svg", "alert", "onerror", *load_payloads()[:25]]:
            page.goto("/courrier/recherche?q=" + urllib.parse.quote(query))
            page.wait_for_load_state("load")
            assert_no_live_payload(page, f"search {query!r}")
            watch.check(f"search {query!r}")
        for field in ("de", "objet", "depuis"):
            page.goto(f"/courrier/recherche?{field}=" + urllib.parse.quote('"><svg onload=alert(1)>'))
            assert_no_live_payload(page, f"search {field}")
            watch.check(f"search {field}")
    finally:
        context.close()


# --- 2. cross-site requests -----------------------------------------------------------------------------


@pytest.fixture
def victim(platform, browser):
    """A logged-in browser of a fresh account with one message: (page, context, address, entry)."""
    address = make_account(platform, "Cible")
    message = mail(address, f"Message à garder {uuid.uuid4().hex[:6]}", html="<p>Bonjour <b>Cible</b></p>")
    send(platform, message, address)
    entry = wait_until(lambda: (entries_of(platform, address) or [None])[0], timeout=120, what="delivery")
    context = browser.new_context(base_url=platform["url"])
    context.set_default_timeout(30_000)
    page = context.new_page()
    login(page, address, PASSWORD)
    yield page, context, address, entry
    context.close()


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin serving a page whose form posts itself to the webmail."""

    target = ""
    fields: list[tuple[str, str]] = []  # noqa: RUF012

    def do_GET(self):
        inputs = "".join(
            f'<input type="hidden" name="{name}" value="{value}">' for name, value in type(self).fields
        )
        body = (
            f'<html><body><form id="f" method="post" action="{type(self).target}">{inputs}</form>'
            "<script>document.getElementById('f').submit()</script></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_cross_site_form_is_refused(platform, victim):
    page, _context, _address, entry = victim
    before = platform["db"].mailbox_entries.find_one({"_id": entry["_id"]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    attacker = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # 127.0.0.1 on another port is another origin but the same site: SameSite=Lax lets the cookie
        # go, so the Origin check is what must refuse.
        for target, fields in (
            ("/courrier/actions", [("action", "supprimer"), ("ids", entry["_id"]), ("dossier", "INBOX")]),
            ("/deconnexion", []),
        ):
            _Attacker.target, _Attacker.fields = platform["url"] + target, fields
            with page.expect_response(lambda r: r.url.startswith(platform["url"] + target)) as response:
                page.goto(attacker + "/")
            assert response.value.status == 403, target
        assert platform["db"].mailbox_entries.find_one({"_id": entry["_id"]}) == before
        page.goto("/courrier/INBOX")
        assert "/courrier/INBOX" in page.url  # still logged in: the forged logout did nothing
    finally:
        server.shutdown()


def test_post_with_foreign_origin_or_without_token_is_refused(platform, victim):
    page, context, _address, entry = victim
    cookie, token = cookie_of(context), csrf_of(page)
    db = platform["db"]
    before = db.mailbox_entries.find_one({"_id": entry["_id"]})
    form = {"action": "suivre", "ids": entry["_id"], "dossier": "INBOX", "retour": "/courrier/INBOX"}
    origin = platform["url"]
    refused = {
        "foreign Origin": raw_post(
            platform, "/courrier/actions", cookie, {**form, "csrf_token": token}, Origin="http://evil.example"
        ),
        "foreign Referer, no Origin": raw_post(
            platform,
            "/courrier/actions",
            cookie,
            {**form, "csrf_token": token},
            Referer="http://evil.example/page",
        ),
        "no Origin nor Referer": raw_post(
            platform, "/courrier/actions", cookie, {**form, "csrf_token": token}
        ),
        "Origin null": raw_post(
            platform, "/courrier/actions", cookie, {**form, "csrf_token": token}, Origin="null"
        ),
        "no CSRF token": raw_post(platform, "/courrier/actions", cookie, form, Origin=origin),
        "wrong CSRF token": raw_post(
            platform, "/courrier/actions", cookie, {**form, "csrf_token": "x" * 43}, Origin=origin
        ),
        "token in a header of another session": raw_post(
            platform, "/courrier/actions", None, form, Origin=origin, **{"X-CSRF-Token": token}
        ),
        "logout without token": raw_post(platform, "/deconnexion", cookie, {}, Origin=origin),
    }
    for what, response in refused.items():
        assert response.status_code == 403, (what, response.status_code)
    assert db.mailbox_entries.find_one({"_id": entry["_id"]}) == before
    # The same request, same origin and with the token, works: the refusals above were the checks.
    accepted = raw_post(platform, "/courrier/actions", cookie, {**form, "csrf_token": token}, Origin=origin)
    assert accepted.status_code == 303
    assert db.mailbox_entries.find_one({"_id": entry["_id"]})["flags"]["flagged"] is True


# --- 3. one user, another's messages ---------------------------------------------------------------------


def test_another_users_messages_are_not_found_on_any_route(platform, browser, victim):
    """As A, B's entry ids on every mail route: 404 like an id that does not exist; B's mail unchanged."""
    _, _, b_address, _ = victim
    db = platform["db"]
    message = mail(b_address, f"Confidentiel {uuid.uuid4().hex[:6]}", text="Réservé à B.\n")
    message.add_attachment(b"secret de B", "application", "pdf", filename="secret.pdf")
    send(platform, message, b_address)
    theirs = wait_until(
        lambda: db.mailbox_entries.find_one({"mailbox": b_address, "subject": message["Subject"]}),
        timeout=120,
        what="B's message",
    )
    draft = {**theirs, "_id": uuid.uuid4().hex[:32], "folder": "Drafts"}
    db.mailbox_entries.insert_one(draft)
    snapshot = {i: db.mailbox_entries.find_one({"_id": i}) for i in (theirs["_id"], draft["_id"])}

    a_address = make_account(platform, "Curieux")
    context = browser.new_context(base_url=platform["url"])
    try:
        page = context.new_page()
        login(page, a_address, PASSWORD)
        cookie, token = cookie_of(context), csrf_of(page)
        missing = uuid.uuid4().hex[:32]
        part = theirs["attachments"][0]["part"]

        def reads(entry_id: str, folder: str) -> list[str]:
            return [
                f"/courrier/{folder}/{entry_id}",
                f"/courrier/INBOX/{entry_id}",
                f"/courrier/message/{entry_id}/corps?images=0",
                f"/courrier/message/{entry_id}/corps?images=1",
                f"/courrier/message/{entry_id}/ligne",
                f"/courrier/message/{entry_id}/piece/{part}",
                f"/ecrire?repondre={entry_id}",
                f"/ecrire?repondre_tous={entry_id}",
                f"/ecrire?transferer={entry_id}",
                f"/ecrire?brouillon={entry_id}",
            ]

        for entry_id, folder in ((theirs["_id"], theirs["folder"]), (draft["_id"], "Drafts")):
            for path in reads(entry_id, folder):
                response = raw_get(platform, path, cookie)
                control = raw_get(platform, path.replace(entry_id, missing), cookie)
                assert response.status_code == 404, (path, response.status_code)
                assert control.status_code == 404, (path, "control", control.status_code)
                assert "Confidentiel" not in response.text and "secret" not in response.text

        # Every action of the list on B's ids: the same answer as for an id that does not exist.
        actions = [("lu", {}), ("non_lu", {}), ("suivre", {}), ("ne_plus_suivre", {}), ("supprimer", {}),
                   ("restaurer", {}), ("indesirable", {}), ("non_indesirable", {}),
                   ("deplacer", {"dossier_cible": "Trash"})]  # fmt: skip
        for action, extra in actions:
            for entry_id in (theirs["_id"], draft["_id"]):
                outcomes = []
                for target in (entry_id, missing):
                    form = {"action": action, "ids": target, "dossier": "INBOX", "retour": "/courrier/INBOX",
                            "csrf_token": token, **extra}  # fmt: skip
                    response = raw_post(platform, "/courrier/actions", cookie, form, Origin=platform["url"])
                    assert response.status_code in (303, 400, 404), (action, response.status_code)
                    after = raw_get(platform, response.headers.get("Location", "/courrier/INBOX"), cookie)
                    flash = re.findall(r'<div class="fr-alert[^"]*"[^>]*>.*?</div>', after.text, re.S)
                    outcomes.append((response.status_code, response.headers.get("Location"), flash))
                assert outcomes[0] == outcomes[1], (action, "answers differ for another's id", outcomes)
        # Compose: B's ids as the draft to replace, the message replied to, an attachment to keep.
        for path in ("/ecrire/brouillon", "/ecrire"):
            form = {"action": "brouillon", "a": a_address, "objet": "Essai", "texte": "x", "csrf_token": token,
                    "brouillon": draft["_id"], "origine": theirs["_id"], "en_reponse_a": theirs["message_id_header"],
                    "garder": f"m:{theirs['_id']}:{part}"}  # fmt: skip
            response = raw_post(platform, path, cookie, form, Origin=platform["url"])
            assert response.status_code in (200, 303, 400), (path, response.status_code)
            if path == "/ecrire/brouillon" and response.status_code == 200:
                assert response.json()["attachments"] == [], "B's attachment was copied into A's draft"
        for entry_id, before in snapshot.items():
            assert db.mailbox_entries.find_one({"_id": entry_id}) == before, entry_id
        for mine in db.mailbox_entries.find({"mailbox": a_address}):
            assert not mine.get("attachments"), "B's attachment reached A's mailbox"
    finally:
        context.close()


# --- 4. sessions and cookies -----------------------------------------------------------------------------


def _token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_session_id_changes_at_login_and_logout_kills_it(platform, browser):
    address = make_account(platform, "Session")
    context = browser.new_context(base_url=platform["url"])
    try:
        page = context.new_page()
        page.goto("/connexion")
        anonymous = cookie_of(context)
        with page.expect_response(
            lambda r: r.url.endswith("/connexion") and r.request.method == "POST"
        ) as resp:
            page.get_by_label("Identifiant").fill(address)
            page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Se connecter").click()
        page.wait_for_url("**/courrier/**")
        logged_in = cookie_of(context)
        assert logged_in[1] != anonymous[1]
        assert platform["db"].webmail_sessions.find_one({"_id": _token_hash(anonymous[1])}) is None
        assert raw_get(platform, "/courrier/INBOX", anonymous).status_code == 303

        # Cookie attributes as sent, not as the browser stored them.
        set_cookies = [h["value"] for h in resp.value.headers_array() if h["name"].lower() == "set-cookie"]
        session_cookie = next(c for c in set_cookies if c.startswith(logged_in[0] + "="))
        attributes = {
            part.strip().split("=")[0].lower(): part.strip() for part in session_cookie.split(";")[1:]
        }
        assert logged_in[0].startswith("__Host-"), logged_in[0]
        assert "secure" in attributes and "httponly" in attributes
        assert attributes.get("samesite", "").lower() == "samesite=lax"
        assert attributes.get("path") == "Path=/"
        assert "domain" not in attributes
        stored = next(c for c in context.cookies() if c["name"] == logged_in[0])
        assert stored["httpOnly"] and stored["secure"] and stored["sameSite"] == "Lax"
        assert page.evaluate("() => document.cookie") == ""  # HttpOnly: no script can read it

        assert raw_get(platform, "/courrier/INBOX", logged_in).status_code == 200
        page.get_by_role("button", name="Se déconnecter").first.click()
        page.wait_for_url("**/connexion**")
        replay = raw_get(platform, "/courrier/INBOX", logged_in)
        assert replay.status_code == 303 and replay.headers["Location"].startswith("/connexion")
        assert platform["db"].webmail_sessions.find_one({"_id": _token_hash(logged_in[1])}) is None
    finally:
        context.close()


def test_session_id_changes_after_the_first_login_change(platform, browser, new_account):
    address, numen, _ = new_account("Premiere")
    context = browser.new_context(base_url=platform["url"])
    try:
        page = context.new_page()
        page.goto("/connexion")
        page.get_by_label("Identifiant").fill(address)
        page.get_by_label("Mot de passe", exact=True).fill(numen)
        page.get_by_role("button", name="Se connecter").click()
        page.wait_for_url("**/premiere-connexion/mot-de-passe")
        restricted = cookie_of(context)
        # The restricted session reads no mail.
        assert raw_get(platform, "/courrier/INBOX", restricted).status_code == 303
        page.locator("#numen-input").fill(numen)
        page.locator("#nouveau-input").fill(NEW_PASSWORD)
        page.locator("#confirmation-input").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Enregistrer mon mot de passe").click()
        page.wait_for_url("**/courrier/**")
        full = cookie_of(context)
        assert full[1] != restricted[1]
        assert platform["db"].webmail_sessions.find_one({"_id": _token_hash(restricted[1])}) is None
        assert raw_get(platform, "/courrier/INBOX", restricted).status_code == 303
        assert raw_get(platform, "/courrier/INBOX", full).status_code == 200
    finally:
        context.close()


def test_csp_headers_on_pages_and_on_the_body_frame(platform, victim):
    page, context, _address, entry = victim
    cookie = cookie_of(context)
    for path in ("/connexion", "/aide", "/courrier/INBOX", f"/courrier/INBOX/{entry['_id']}",
                 "/courrier/recherche?q=message", "/ecrire", "/sessions", "/page-qui-n-existe-pas"):  # fmt: skip
        response = raw_get(platform, path, cookie)
        assert response.headers.get("Content-Security-Policy") == CSP, path
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("Referrer-Policy") == "no-referrer", path
    for images in (0, 1):
        response = raw_get(platform, f"/courrier/message/{entry['_id']}/corps?images={images}", cookie)
        assert response.status_code == 200
        csp = response.headers.get("Content-Security-Policy")
        assert csp == message_body_csp(bool(images))
        assert "sandbox" in csp and "script-src" not in csp and "default-src 'none'" in csp
        if not images:
            assert "img-src data:;" in csp + ";" and "http" not in csp
    # The reader frames the body in a sandbox without scripts.
    page.goto(f"/courrier/INBOX/{entry['_id']}")
    page.wait_for_load_state("load")
    assert page.locator("iframe").count() == 1, (page.url, page.locator("main").inner_text()[:400])
    sandbox = page.locator("iframe").first.get_attribute("sandbox")
    assert sandbox is not None and "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
