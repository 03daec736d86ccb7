"""Unit tests of the authentication pages: the app over a fake directory and a real (FerretDB) database
for the sessions, driven through aiohttp's test client."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from common.config import get_settings
from directory import messages
from webmail import captcha
from webmail.app import cookie_name, create_app
from webmail.auth_testing import FakeDirectory, WebClient
from webmail.sessions import COLLECTION, token_hash

PASSWORD = "Montpellier-Test-2026!"
NEW_PASSWORD = "Garrigue-Lozere-2027?"
NUMEN = "02E1234567XYZ"


def run(database, body: Callable[[WebClient, FakeDirectory], Awaitable[None]], **overrides) -> None:
    """Run `body(web, directory)` against a fresh app on its own event loop."""
    settings = dataclasses.replace(get_settings(), webmail_cookie_secure=True, **overrides)
    directory = FakeDirectory()

    async def main() -> None:
        app = create_app(settings, database=database, directory=directory)
        async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
            await body(WebClient(client, cookie_name(settings)), directory)

    asyncio.run(main())


async def login(web: WebClient, identifier: str, password: str):
    await web.get("/connexion")
    return await web.post("/connexion", {"identifiant": identifier, "mot_de_passe": password})


def stored_sessions(database) -> list[dict]:
    return list(database[COLLECTION].find({}))


# --- login ------------------------------------------------------------------------------------------


def test_root_redirects_to_login_then_to_inbox(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        response, _ = await web.get("/")
        assert response.status == 303 and response.headers["Location"] == "/connexion"
        response, _ = await login(web, address, PASSWORD)
        assert response.status == 303 and response.headers["Location"] == "/courrier/INBOX"
        response, _ = await web.get("/")
        assert response.headers["Location"] == "/courrier/INBOX"
        response, _ = await web.get("/connexion")
        assert response.headers["Location"] == "/courrier/INBOX"

    run(database, body)


def test_login_rotates_the_session_and_sets_a_hardened_cookie(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        response, _ = await web.get("/connexion")
        assert response.status == 200
        anonymous = web.token
        assert anonymous
        assert "Content-Security-Policy" in response.headers
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
        header = web.set_cookie_headers[-1]
        assert header.startswith("__Host-webmail=")
        for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert flag.lower() in header.lower()
        assert "domain=" not in header.lower()

        response, _ = await web.post("/connexion", {"identifiant": address, "mot_de_passe": PASSWORD})
        assert response.status == 303
        assert web.token and web.token != anonymous
        ids = [doc["_id"] for doc in stored_sessions(database)]
        assert token_hash(web.token) in ids
        assert token_hash(anonymous) not in ids  # the pre-login token is worthless now
        session = database[COLLECTION].find_one({"_id": token_hash(web.token)})
        assert session["account_id"] and not session["must_change_password"]

    run(database, body)


def test_login_accepts_prenom_nom_and_keeps_the_identifier_on_refusal(database):
    async def body(web, directory):
        directory.add("Camille", "Martin", PASSWORD)
        response, page = await login(web, "camille.martin", "mauvais")
        assert response.status == 401
        assert messages.BAD_CREDENTIALS in page
        assert 'role="alert"' in page
        assert 'value="camille.martin"' in page
        assert "mauvais" not in page
        response, _ = await web.post(
            "/connexion", {"identifiant": "camille.martin", "mot_de_passe": PASSWORD}
        )
        assert response.status == 303

    run(database, body)


@pytest.mark.parametrize(
    ("setup", "status", "expected"),
    [
        ("unknown", 401, messages.BAD_CREDENTIALS),
        ("suspended", 403, messages.ACCOUNT_SUSPENDED),
        ("deleted", 403, messages.ACCOUNT_DELETED),
        ("maintenance", 503, "Migration des boîtes jusqu'à 14 h."),
        ("throttled", 429, "Réessayez dans 60 secondes"),
        ("down", 503, "Service momentanément indisponible"),
    ],
)
def test_each_refusal_is_shown(database, setup, status, expected):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        identifier = address
        if setup == "unknown":
            identifier = "personne.inconnue@ac-montpellier.fr"
        elif setup in ("suspended", "deleted"):
            directory.accounts[address].status = setup
        elif setup == "maintenance":
            directory.maintenance_on, directory.maintenance_message = (
                True,
                "Migration des boîtes jusqu'à 14 h.",
            )
        elif setup == "throttled":
            directory.throttled.add(address)
        await web.get("/connexion")
        if setup == "down":
            directory.unavailable = True
        response, page = await web.post("/connexion", {"identifiant": identifier, "mot_de_passe": PASSWORD})
        assert response.status == status
        assert expected in page.replace("&#39;", "'")
        assert 'role="alert"' in page
        assert f'value="{identifier}"' in page
        if setup in ("suspended", "deleted"):
            assert 'href="/aide"' in page
        assert not database[COLLECTION].find_one({"account_id": {"$ne": ""}})

    run(database, body)


def test_maintenance_banner_on_the_login_page(database):
    async def body(web, directory):
        directory.maintenance_on, directory.maintenance_message = True, "Mise à jour jusqu'à 14 h."
        response, page = await web.get("/connexion")
        assert response.status == 200
        assert "Maintenance en cours" in page and "Mise à jour jusqu" in page

    run(database, body)


def test_login_page_survives_a_directory_outage(database):
    async def body(web, directory):
        directory.unavailable = True
        response, page = await web.get("/connexion")
        assert response.status == 200 and "Se connecter" in page

    run(database, body)


# --- CSRF -------------------------------------------------------------------------------------------


def test_csrf_token_and_origin_are_required(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        await web.get("/connexion")
        form = {"identifiant": address, "mot_de_passe": PASSWORD}
        response, page = await web.post("/connexion", form, csrf=False)
        assert response.status == 403 and "Formulaire expiré" in page
        response, _ = await web.post("/connexion", {**form, "csrf_token": "faux"})
        assert response.status == 403
        response, page = await web.post("/connexion", form, origin="https://attaquant.example")
        assert response.status == 403 and "ne vient pas du webmail" in page
        # Under `Referrer-Policy: no-referrer` browsers send `Origin: null` for our own forms:
        # Sec-Fetch-Site decides, and a foreign page hiding its origin is still refused.
        response, _ = await web.post(
            "/connexion", form, origin="null", headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert response.status == 403
        response, _ = await web.post("/connexion", form, origin="null")
        assert response.status == 403
        assert "authenticate" not in directory.calls
        response, _ = await web.post(
            "/connexion", form, origin="null", headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert response.status == 303

    run(database, body)


# --- first login ------------------------------------------------------------------------------------


def test_first_login_forced_change_rotates_again(database):
    async def body(web, directory):
        address = directory.add("Yann", "Legoff", numen=NUMEN)
        response, _ = await login(web, address, NUMEN)
        assert response.headers["Location"] == "/premiere-connexion/mot-de-passe"
        restricted = web.token
        doc = database[COLLECTION].find_one({"_id": token_hash(restricted)})
        assert doc["must_change_password"] is True
        assert NUMEN not in str(doc)  # the NUMEN is never kept
        # The restricted session reaches nothing else.
        response, _ = await web.get("/sessions")
        assert response.headers["Location"] == "/premiere-connexion/mot-de-passe"
        response, page = await web.get("/premiere-connexion/mot-de-passe")
        assert response.status == 200 and "NUMEN" in page
        # Live policy feedback.
        response, _ = await web.post("/mot-de-passe/politique", json={"password": "azerty"})
        answer = await response.json()
        assert answer["available"] and not answer["acceptable"]
        assert any("trop courant" in p for p in answer["problems"])
        response, _ = await web.post("/mot-de-passe/politique", json={"password": "x"}, csrf=False)
        assert response.status == 403
        # Mismatch, wrong NUMEN, weak password: refused with a message.
        form = {"numen": NUMEN, "nouveau": NEW_PASSWORD, "confirmation": "autre"}
        response, page = await web.post("/premiere-connexion/mot-de-passe", form)
        assert response.status == 400 and "ne sont pas identiques" in page
        form = {"numen": "01E9509999ZZZ", "nouveau": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
        response, page = await web.post("/premiere-connexion/mot-de-passe", form)
        assert "NUMEN saisi est incorrect" in page
        form = {"numen": NUMEN, "nouveau": "azerty", "confirmation": "azerty"}
        response, page = await web.post("/premiere-connexion/mot-de-passe", form)
        assert "trop courant" in page and "au moins 12" in page
        assert web.token == restricted
        # Success: a new session id, a full session, the inbox with a flash.
        form = {"numen": NUMEN, "nouveau": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
        response, _ = await web.post("/premiere-connexion/mot-de-passe", form)
        assert response.status == 303 and response.headers["Location"] == "/courrier/INBOX"
        assert web.token != restricted
        assert database[COLLECTION].find_one({"_id": token_hash(restricted)}) is None
        doc = database[COLLECTION].find_one({"_id": token_hash(web.token)})
        assert doc["must_change_password"] is False
        assert doc["session_epoch"] == directory.accounts[address].account.session_epoch
        assert "mot de passe est enregistré" in doc["data"]["flash"][0]["message"]
        # The new password works.
        await web.post("/deconnexion", {})
        response, _ = await login(web, address, NEW_PASSWORD)
        assert response.headers["Location"] == "/courrier/INBOX"

    run(database, body)


# --- password change, sessions, logout ---------------------------------------------------------------


def test_password_change_ends_the_other_sessions(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        other = WebClient(web.client, web.cookie_name)
        await login(other, address, PASSWORD)
        await login(web, address, PASSWORD)
        before = web.token
        response, page = await web.get("/sessions")
        assert response.status == 200
        assert page.count('name="session"') == 2 and "Cette session" in page
        assert "Firefox sous Linux" in page
        response, page = await web.post(
            "/mot-de-passe/changer", {"actuel": "faux", "nouveau": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
        )
        assert "mot de passe actuel est incorrect" in page
        response, _ = await web.post(
            "/mot-de-passe/changer",
            {"actuel": PASSWORD, "nouveau": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        )
        assert response.status == 303 and response.headers["Location"] == "/sessions"
        assert web.token != before
        response, page = await web.get("/sessions")
        assert response.status == 200 and page.count('name="session"') == 1
        assert "Vos autres sessions ont été fermées" in page
        response, _ = await other.get("/sessions")
        assert response.status == 303 and response.headers["Location"].startswith("/connexion")

    run(database, body)


def test_revoke_one_session_and_all_others(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        second, third = WebClient(web.client, web.cookie_name), WebClient(web.client, web.cookie_name)
        for client in (second, third, web):
            await login(client, address, PASSWORD)
        _, page = await web.get("/sessions")
        short_ids = re.findall(r'name="session" value="([^"]+)"', page)
        assert len(short_ids) == 3
        second_short = token_hash(second.token)[:16]
        response, _ = await web.post("/sessions/fermer", {"session": second_short})
        assert response.headers["Location"] == "/sessions"
        response, _ = await second.get("/sessions")
        assert response.status == 303
        response, _ = await web.post("/sessions/fermer-autres", {})
        response, page = await web.get("/sessions")
        assert "Une autre session a été fermée" in page
        response, _ = await third.get("/sessions")
        assert response.status == 303
        # Closing one's own session is a logout.
        response, _ = await web.post("/sessions/fermer", {"session": token_hash(web.token)[:16]})
        assert response.headers["Location"] == "/connexion?motif=fermee"

    run(database, body)


def test_logout_ends_the_session_and_clears_the_cookie(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        await login(web, address, PASSWORD)
        token = web.token
        response, _ = await web.post("/deconnexion", {}, csrf=False)
        assert response.status == 403
        response, _ = await web.post("/deconnexion", {})
        assert response.status == 303 and response.headers["Location"] == "/connexion?motif=deconnexion"
        assert "max-age=0" in web.set_cookie_headers[-1].lower()
        assert database[COLLECTION].find_one({"_id": token_hash(token)}) is None
        response, page = await web.get("/connexion?motif=deconnexion")
        assert "Vous êtes déconnecté" in page

    run(database, body)


# --- session validity against the directory ---------------------------------------------------------


def _expire_check(database, token: str) -> None:
    database[COLLECTION].update_one(
        {"_id": token_hash(token)}, {"$set": {"data.directory_checked_at": time.time() - 120}}
    )


@pytest.mark.parametrize(
    ("change", "motif"),
    [
        ("deleted", "supprime"),
        ("suspended", "suspendu"),
        ("epoch", "revoquee"),
        ("maintenance", "maintenance"),
    ],
)
def test_session_ends_when_the_directory_says_so(database, change, motif):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        await login(web, address, PASSWORD)
        response, _ = await web.get("/sessions")
        assert response.status == 200
        if change in ("deleted", "suspended"):
            directory.set_status(address, change)
        elif change == "epoch":
            directory._bump(directory.accounts[address])
        else:
            directory.maintenance_on = True
        # Within the minute the session is not checked again…
        response, _ = await web.get("/sessions")
        assert response.status == 200
        # …after it, it is.
        _expire_check(database, web.token)
        response, _ = await web.get("/sessions")
        assert response.status == 303 and response.headers["Location"] == f"/connexion?motif={motif}"
        assert not database[COLLECTION].find_one({"account_id": {"$ne": ""}})
        response, page = await web.get(response.headers["Location"])
        assert response.status == 200 and 'role="alert"' in page

    run(database, body)


def test_session_survives_a_directory_outage(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        await login(web, address, PASSWORD)
        _expire_check(database, web.token)
        directory.unavailable = True
        response, _ = await web.get("/sessions")
        assert response.status == 200

    run(database, body)


def test_expired_session_is_sent_to_login_with_the_reason(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD)
        await login(web, address, PASSWORD)
        database[COLLECTION].delete_many({})
        response, _ = await web.get("/sessions")
        assert response.headers["Location"] == "/connexion?motif=expiree"

    run(database, body)


# --- lost password and captcha ------------------------------------------------------------------------


def _captcha_answer(database, web: WebClient) -> str:
    doc = database[COLLECTION].find_one({"_id": token_hash(web.token)})
    return doc["data"][captcha.KEY]["answer"]


def test_reset_request_gives_the_same_answer_whether_or_not_the_account_exists(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD, numen=NUMEN, birth_date="1984-05-17")
        answers = []
        for identifier in (address, "personne.inconnue@ac-montpellier.fr"):
            response, page = await web.get("/mot-de-passe/oublie")
            assert response.status == 200 and "/captcha.png" in page and "/captcha.wav" in page
            form = {
                "identifiant": identifier,
                "numen": NUMEN,
                "naissance": "1984-05-17",
                "captcha": _captcha_answer(database, web),
            }
            response, page = await web.post("/mot-de-passe/oublie", form)
            assert response.status == 200
            answers.append(re.search(r'id="reponse">(.*?)</div>', page, re.S).group(1))
        assert answers[0] == answers[1]
        assert "adresse de secours" in answers[0]
        assert [r["address"] for r in directory.reset_requests] == [address]

    run(database, body)


def test_captcha_is_single_use_case_insensitive_and_throttled(database):
    async def body(web, directory):
        directory.add("Camille", "Martin", PASSWORD, numen=NUMEN)
        await web.get("/mot-de-passe/oublie")
        answer = _captcha_answer(database, web)
        form = {"identifiant": "camille.martin", "numen": NUMEN, "naissance": "1984-05-17"}
        response, page = await web.post("/mot-de-passe/oublie", {**form, "captcha": " ".join(answer)})
        assert response.status == 200 and 'id="reponse"' in page
        # The same answer again: refused (single use), without calling the directory.
        calls = directory.calls.count("request_password_reset")
        response, page = await web.post("/mot-de-passe/oublie", {**form, "captcha": answer})
        assert response.status == 400 and "code de vérification ne correspond pas" in page
        assert NUMEN not in page  # never echoed
        assert directory.calls.count("request_password_reset") == calls
        # Images and audio of the current code; a new code on demand.
        response, _ = await web.get("/captcha.png")
        assert response.status == 200 and response.content_type == "image/png"
        assert (await response.read()).startswith(b"\x89PNG")
        response, _ = await web.get("/captcha.wav")
        assert response.content_type == "audio/wav" and (await response.read()).startswith(b"RIFF")
        before = _captcha_answer(database, web)
        response, _ = await web.post("/captcha/nouveau", json={})
        assert response.status == 204
        # (A new draw may repeat by chance: one in a million.)
        assert len(_captcha_answer(database, web)) == captcha.LENGTH
        assert before.isdigit()
        # Too many failures: the session is blocked, even with the right answer.
        for _ in range(captcha.MAX_FAILURES):
            await web.post("/mot-de-passe/oublie", {**form, "captcha": "000000x"})
        answer = _captcha_answer(database, web)
        response, page = await web.post("/mot-de-passe/oublie", {**form, "captcha": answer})
        assert response.status == 429 and "Trop de codes" in page

    run(database, body)


def test_malformed_reset_request_says_why(database):
    async def body(web, directory):
        await web.get("/mot-de-passe/oublie")
        form = {"identifiant": "x", "numen": "123", "naissance": "1984-05-17"}
        response, page = await web.post(
            "/mot-de-passe/oublie", {**form, "captcha": _captcha_answer(database, web)}
        )
        assert response.status == 400 and "NUMEN invalide" in page

    run(database, body)


def test_reset_link_sets_a_new_password_once(database):
    async def body(web, directory):
        address = directory.add("Camille", "Martin", PASSWORD, numen=NUMEN)
        await directory.request_password_reset(identifier=address, numen=NUMEN, birth_date="1984-05-17")
        token = directory.reset_requests[-1]["token"]
        response, page = await web.get(f"/reinitialisation?jeton={token}")
        assert response.status == 200 and 'action="/reinitialisation"' in page
        assert "http://" not in page.split("<body>", 1)[1].replace(web.origin, "")  # no external resource
        form = {"jeton": token, "nouveau": "azerty", "confirmation": "azerty"}
        response, page = await web.post("/reinitialisation", form)
        assert response.status == 400 and "trop courant" in page and token in page  # the link stays usable
        form = {"jeton": token, "nouveau": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
        response, _ = await web.post("/reinitialisation", form)
        assert response.status == 303 and response.headers["Location"] == "/connexion"
        response, page = await web.get("/connexion")
        assert messages.RESET_DONE in page.replace("&#39;", "'")
        response, page = await web.post("/reinitialisation", form)
        assert response.status == 410 and "plus valable" in page
        response, _ = await login(web, address, NEW_PASSWORD)
        assert response.headers["Location"] == "/courrier/INBOX"
        response, page = await web.get("/reinitialisation?jeton=court")
        assert response.status == 400 and "incomplet" in page

    run(database, body)


# --- help ---------------------------------------------------------------------------------------------


def test_help_page_public_and_highlighting_the_users_dsden(database):
    async def body(web, directory):
        response, page = await web.get("/aide")
        assert response.status == 200
        for name in ("Aude", "Gard", "Hérault", "Lozère", "Pyrénées-Orientales", "Rectorat"):
            assert name in page
        assert "Votre département" not in page
        address = directory.add("Camille", "Martin", PASSWORD, departement="48")
        await login(web, address, PASSWORD)
        response, page = await web.get("/aide")
        assert "Votre département" in page
        assert page.index('id="dsden-48"') < page.index('id="dsden-11"')
        directory.unavailable = True
        response, page = await web.get("/aide")
        assert response.status == 200 and "momentanément indisponibles" in page

    run(database, body)


# --- small pieces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0", "Firefox sous Linux"),
        (
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36",
            "Chrome sous Android",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36 Edg/130.0",
            "Edge sous Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1",
            "Safari sous iOS",
        ),
        ("", "Navigateur inconnu"),
    ],
)
def test_describe_user_agent(user_agent, expected):
    from webmail.views.auth import describe_user_agent

    assert describe_user_agent(user_agent) == expected


def test_captcha_answers_are_digits_and_expire():
    from common.db import utcnow
    from webmail.sessions import Session

    now = utcnow()
    session = Session("t", "id", "csrf", now, now, now)
    answer = captcha.new_challenge(session)
    assert len(answer) == captcha.LENGTH and answer.isdigit()
    assert captcha.current_answer(session) == answer
    session.data[captcha.KEY]["expires_at"] = now.isoformat()
    expired = captcha.current_answer(session)  # an expired code is replaced by a new draw
    assert captcha.current_answer(session) == expired
    session.data[captcha.KEY]["expires_at"] = now.isoformat()
    assert not captcha.check(session, expired)  # expired: refused even when right
    assert captcha.KEY not in session.data
