"""Browser tests: the whole platform as processes plus the webmail, driven by Playwright in Debian's
chromium (`/usr/bin/chromium`, installed by `make bootstrap`).

One platform is started for the browser tests (it takes a while) and stopped after the last of them:
package scope, so that its pipeline services never consume the queues of the integration tests that run
later in the same run, and so that Playwright's event loop is gone before tests that call `asyncio.run`.
Tests use their own accounts (`new_account`, `activated_account`) or the shared ones in
`platform["people"]` when they only read.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port
from tests.pipeline import running_stages
from tests.platform import running_platform

PASSWORD = "Montpellier-Test-2026!"
PEOPLE = [("Martin", "Camille"), ("Garcia", "Louis"), ("Dubois", "Alice")]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"
#: Viewports of the screenshots kept in docs/screenshots.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
#: Chromium flags for a closed network (no background connections) and root (no sandbox).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="package")
def platform(tmp_path_factory) -> Iterator[dict]:
    """The platform and the webmail; `platform["url"]` is the webmail's base URL."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make bootstrap` (Debian package chromium)")
    folder = tmp_path_factory.mktemp("browser")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_platform(folder, PEOPLE, PASSWORD, PUBLIC_URL=url) as running:
        env = {**running["env"], "WEBMAIL_PORT": str(port), "PUBLIC_URL": url}
        with running_stages(["webmail"], running["database_name"], folder, **env) as procs:
            yield {**running, "url": url, "webmail": procs["webmail"], "password": PASSWORD}


@pytest.fixture
def new_account(platform):
    """Factory: an account created by the rectorat, still awaiting its first (NUMEN) login.

    Returns (address, numen, person) — person is the NewAccount (birth date, names) used to create it.
    """
    from directory.testing import make_numen, make_person

    def make(first_name: str = "Test", last_name: str | None = None, **overrides):
        numen = make_numen()
        # Names allow letters only: a random suffix of letters keeps accounts apart.
        last_name = last_name or "Essai" + "".join(chr(97 + b % 26) for b in uuid.uuid4().bytes[:8])
        person = make_person(first_name=first_name, last_name=last_name, numen=numen, **overrides)
        ok, message, account = platform["directory"].create_account(person)
        assert ok, message
        return account.address, numen, person

    return make


@pytest.fixture
def activated_account(platform, new_account):
    """Factory: an account whose first login is done; returns (address, password)."""

    def make(first_name: str = "Test", **overrides):
        address, numen, _ = new_account(first_name, **overrides)
        platform["directory"].change_password(address, numen, PASSWORD)
        return address, PASSWORD

    return make


@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def context(browser, platform):
    """A fresh browser profile (no cookies) at desktop size."""
    context = browser.new_context(base_url=platform["url"], viewport=DESKTOP, locale="fr-FR")
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page, address: str, password: str) -> None:
    """Log in through the login page and wait for the inbox."""
    page.goto("/connexion")
    # By role: the fieldset's legend ("Vos identifiants académiques") also matches the label text.
    page.get_by_role("textbox", name=re.compile("^Identifiant")).fill(address)
    page.get_by_label("Mot de passe", exact=True).fill(password)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/courrier/**")


def screenshot(page, name: str) -> None:
    """Keep a screenshot of the page at phone and desktop sizes in docs/screenshots/<name>-{phone,desktop}.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=False)
    page.set_viewport_size(original)


AXE = ROOT / "services" / "webmail" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core in the page; the violations of the given impacts (rule id, help, nodes)."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `make bootstrap`")
    # Evaluated through the DevTools protocol: an inline <script> would (rightly) be blocked by the CSP.
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in impacts
    ]
