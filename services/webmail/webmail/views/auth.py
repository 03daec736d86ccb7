"""Authentication pages: login, first login (forced password change), password change, lost password
with its captcha, reset link, logout, and the list of one's sessions.

Every decision about credentials is the directory's (`AsyncDirectoryClient`): the webmail shows its
French messages as they come, so it never says more about an account than the directory does. A new
session token is issued at login and again after the first-login change (`SessionStore.login`).

First login: the forced-change form asks for the NUMEN again rather than keeping it from the login
form. Keeping it would mean holding a secret in the webmail between two requests — in the database (never
acceptable) or in one process's memory (lost when another replica or a restart serves the next request);
typing it again costs the user a few seconds and proves the person at the keyboard still knows it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from directory.client import Account, DirectoryClientError, DirectoryUnavailable
from webmail import captcha
from webmail.app import (
    DIRECTORY,
    SESSIONS,
    client_address,
    ensure_session,
    flash,
    get_session,
    login_required,
    render,
    replace_session,
    run_sync,
)
from webmail.sessions import Session

log = logging.getLogger("webmail.auth")

INBOX = "/courrier/INBOX"
PARIS = ZoneInfo("Europe/Paris")
MAX_PASSWORD = 1024

UNAVAILABLE = (
    "Service momentanément indisponible : l'annuaire académique ne répond pas. "
    "Merci de réessayer dans quelques minutes."
)
#: Why the user lands on the login page (`/connexion?motif=…`): (level, French text).
MOTIFS = {
    "deconnexion": ("success", "Vous êtes déconnecté. À bientôt !"),
    "expiree": ("info", "Votre session a expiré. Merci de vous reconnecter."),
    "fermee": ("info", "Cette session a été fermée."),
    "revoquee": (
        "warning",
        "Votre session a été fermée : le mot de passe a été modifié ou la session révoquée. "
        "Merci de vous reconnecter.",
    ),
    "suspendu": (
        "error",
        "Votre compte est suspendu. Contactez l'assistance de votre DSDEN ou du rectorat.",
    ),
    "supprime": (
        "error",
        "Votre compte a été supprimé par le rectorat. Contactez l'assistance de votre DSDEN.",
    ),
    "maintenance": ("warning", "Une mise à jour de la plateforme est en cours : vous avez été déconnecté."),
}
#: HTTP status of each refusal of the directory.
REFUSAL_STATUS = {
    "BAD_CREDENTIALS": 401,
    "ACCOUNT_SUSPENDED": 403,
    "ACCOUNT_DELETED": 403,
    "MAINTENANCE": 503,
    "THROTTLED": 429,
}
#: Refusals after which the page points to the help desks.
CONTACT_REFUSALS = {"ACCOUNT_SUSPENDED", "ACCOUNT_DELETED"}
DEFAULT_RULES = (
    "Au moins 12 caractères avec des majuscules, des minuscules, des chiffres et des caractères spéciaux, "
    "ou une phrase de passe d'au moins 20 caractères et 4 mots."
)
MISMATCH = "Les deux saisies du nouveau mot de passe ne sont pas identiques."


# --- helpers ----------------------------------------------------------------------------------------


def _field(form: Any, name: str, limit: int = 320) -> str:
    return str(form.get(name, ""))[:limit]


def profile(account: Account) -> dict[str, str]:
    """What the pages need to know about the user, kept in the session's data (no secret)."""
    return {
        "first_name": account.first_name,
        "last_name": account.last_name,
        "departement": account.departement,
    }


async def _login(request: web.Request, session: Session, account: Account, must_change: bool) -> Session:
    """Rotate the session to a logged-in one (new token, old one deleted)."""
    new = await run_sync(
        request.app[SESSIONS].login,
        session,
        account_id=account.account_id,
        address=account.address,
        display_name=account.display_name,
        session_epoch=account.session_epoch,
        must_change_password=must_change,
    )
    new.data["profile"] = profile(account)
    new.dirty = True
    replace_session(request, new)
    return new


async def password_rules(request: web.Request) -> str:
    """The policy in French, as the directory states it (asked once per process, then kept)."""
    if "rules" not in _rules_cache:
        try:
            _, _, rules = await request.app[DIRECTORY].check_password_policy("")
        except DirectoryClientError:
            return DEFAULT_RULES
        _rules_cache["rules"] = rules
    return _rules_cache["rules"]


_rules_cache: dict[str, str] = {}


async def _maintenance(request: web.Request) -> tuple[bool, str]:
    try:
        state = await request.app[DIRECTORY].maintenance()
    except DirectoryClientError:
        return False, ""
    return state.enabled, state.message


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def describe_user_agent(user_agent: str) -> str:
    """'Firefox sous Linux' from a User-Agent header (a hint for the user, not a security control)."""
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), "")
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), "")
    if browser and system:
        return f"{browser} sous {system}"
    return browser or system or "Navigateur inconnu"


# --- home, login, logout ----------------------------------------------------------------------------


async def home(request: web.Request) -> web.StreamResponse:
    session = get_session(request)
    if session is not None and session.authenticated:
        raise web.HTTPSeeOther(INBOX)
    if session is not None and session.must_change_password:
        raise web.HTTPSeeOther("/premiere-connexion/mot-de-passe")
    raise web.HTTPSeeOther("/connexion")


async def _login_page(
    request: web.Request,
    *,
    identifier: str = "",
    error: str = "",
    error_result: str = "",
    status: int = 200,
) -> web.Response:
    enabled, message = await _maintenance(request)
    motif = MOTIFS.get(request.query.get("motif", ""))
    return await render(
        request,
        "auth/login.html",
        {
            "nav": "",
            "identifier": identifier,
            "error": error,
            "show_contacts": error_result in CONTACT_REFUSALS,
            "maintenance": enabled,
            "maintenance_message": message,
            "motif": {"level": motif[0], "message": motif[1]} if motif else None,
        },
        status,
    )


async def login_form(request: web.Request) -> web.StreamResponse:
    session = get_session(request)
    if session is not None and session.authenticated:
        raise web.HTTPSeeOther(INBOX)
    await ensure_session(request)
    return await _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    session = await ensure_session(request)
    form = await request.post()
    identifier = _field(form, "identifiant").strip()
    password = _field(form, "mot_de_passe", MAX_PASSWORD)
    if not identifier or not password:
        return await _login_page(
            request,
            identifier=identifier,
            error="Indiquez votre identifiant et votre mot de passe.",
            status=400,
        )
    try:
        result = await request.app[DIRECTORY].authenticate(
            identifier, password, client_address(request), service="webmail"
        )
    except DirectoryUnavailable:
        log.warning("login impossible: directory unavailable")
        return await _login_page(request, identifier=identifier, error=UNAVAILABLE, status=503)
    except DirectoryClientError as exc:
        return await _login_page(request, identifier=identifier, error=str(exc), status=400)
    if result.result in ("OK", "PASSWORD_CHANGE_REQUIRED") and result.account is not None:
        first_login = result.result == "PASSWORD_CHANGE_REQUIRED"
        await _login(request, session, result.account, must_change=first_login)
        raise web.HTTPSeeOther("/premiere-connexion/mot-de-passe" if first_login else INBOX)
    return await _login_page(
        request,
        identifier=identifier,
        error=result.message or "Connexion refusée.",
        error_result=result.result,
        status=REFUSAL_STATUS.get(result.result, 403),
    )


async def logout(request: web.Request) -> web.StreamResponse:
    session = get_session(request)
    if session is not None:
        await run_sync(request.app[SESSIONS].end, session.id)
    replace_session(request, None)
    raise web.HTTPSeeOther("/connexion?motif=deconnexion")


# --- first login ------------------------------------------------------------------------------------


async def first_login_help(request: web.Request) -> web.StreamResponse:
    return await render(request, "auth/first_login_help.html", {"nav": ""})


def _restricted_session(request: web.Request) -> Session:
    """The session of a first login awaiting its password change; others are sent where they belong."""
    session = get_session(request)
    if session is None or not session.account_id:
        raise web.HTTPSeeOther("/connexion")
    if not session.must_change_password:
        raise web.HTTPSeeOther(INBOX)
    return session


async def _first_change_page(
    request: web.Request, *, error: str = "", problems: tuple[str, ...] = (), status: int = 200
) -> web.Response:
    return await render(
        request,
        "auth/first_change.html",
        {
            "nav": "",
            "error": error,
            "problems": problems,
            "rules": await password_rules(request),
            "address": get_session(request).address,
        },
        status,
    )


async def first_change_form(request: web.Request) -> web.StreamResponse:
    _restricted_session(request)
    return await _first_change_page(request)


async def first_change_submit(request: web.Request) -> web.StreamResponse:
    session = _restricted_session(request)
    form = await request.post()
    numen = _field(form, "numen", 64)
    new = _field(form, "nouveau", MAX_PASSWORD)
    confirmation = _field(form, "confirmation", MAX_PASSWORD)
    if not numen or not new:
        return await _first_change_page(
            request, error="Indiquez votre NUMEN et votre nouveau mot de passe.", status=400
        )
    if new != confirmation:
        return await _first_change_page(request, error=MISMATCH, status=400)
    try:
        change = await request.app[DIRECTORY].change_password(
            session.address, numen, new, client_address(request)
        )
    except DirectoryUnavailable:
        return await _first_change_page(request, error=UNAVAILABLE, status=503)
    except DirectoryClientError as exc:
        return await _first_change_page(request, error=str(exc), status=400)
    if change.ok and change.account is not None:
        new_session = await _login(request, session, change.account, must_change=False)
        flash(
            new_session,
            "success",
            "Votre mot de passe est enregistré : utilisez-le désormais pour vous connecter. "
            "Bienvenue dans votre messagerie académique !",
        )
        raise web.HTTPSeeOther(INBOX)
    if change.problems:
        return await _first_change_page(
            request, error="Ce mot de passe ne convient pas :", problems=change.problems, status=400
        )
    if change.auth_result == "BAD_CREDENTIALS":
        return await _first_change_page(request, error="Le NUMEN saisi est incorrect.", status=400)
    return await _first_change_page(
        request, error=change.message, status=REFUSAL_STATUS.get(change.auth_result, 400)
    )


# --- password change --------------------------------------------------------------------------------


async def _change_page(
    request: web.Request, *, error: str = "", problems: tuple[str, ...] = (), status: int = 200
) -> web.Response:
    return await render(
        request,
        "auth/change.html",
        {"nav": "", "error": error, "problems": problems, "rules": await password_rules(request)},
        status,
    )


@login_required
async def change_form(request: web.Request) -> web.StreamResponse:
    return await _change_page(request)


@login_required
async def change_submit(request: web.Request) -> web.StreamResponse:
    session = get_session(request)
    form = await request.post()
    current = _field(form, "actuel", MAX_PASSWORD)
    new = _field(form, "nouveau", MAX_PASSWORD)
    confirmation = _field(form, "confirmation", MAX_PASSWORD)
    if not current or not new:
        return await _change_page(
            request, error="Indiquez votre mot de passe actuel et le nouveau.", status=400
        )
    if new != confirmation:
        return await _change_page(request, error=MISMATCH, status=400)
    try:
        change = await request.app[DIRECTORY].change_password(
            session.address, current, new, client_address(request)
        )
    except DirectoryUnavailable:
        return await _change_page(request, error=UNAVAILABLE, status=503)
    except DirectoryClientError as exc:
        return await _change_page(request, error=str(exc), status=400)
    if change.ok and change.account is not None:
        # The directory moved the account's session_epoch: every other session is now stale; this one
        # gets a new token carrying the new epoch, and the others are deleted right away.
        new_session = await _login(request, session, change.account, must_change=False)
        ended = await run_sync(request.app[SESSIONS].end_all, change.account.account_id, keep=new_session.id)
        log.info("password changed; %d other sessions ended", ended)
        flash(
            new_session, "success", "Votre mot de passe a été modifié. Vos autres sessions ont été fermées."
        )
        raise web.HTTPSeeOther("/sessions")
    if change.problems:
        return await _change_page(
            request, error="Ce mot de passe ne convient pas :", problems=change.problems, status=400
        )
    if change.auth_result == "BAD_CREDENTIALS":
        return await _change_page(request, error="Le mot de passe actuel est incorrect.", status=400)
    return await _change_page(
        request, error=change.message, status=REFUSAL_STATUS.get(change.auth_result, 400)
    )


async def policy_check(request: web.Request) -> web.StreamResponse:
    """Live feedback on a candidate password (JSON in, JSON out; the CSRF header is required)."""
    session = get_session(request)
    try:
        body = await request.json()
        password = str(body.get("password", ""))[:MAX_PASSWORD]
    except (ValueError, AttributeError):
        raise web.HTTPBadRequest(text="Requête invalide.") from None
    names = (session.data.get("profile") if session else None) or {}
    try:
        acceptable, problems, rules = await request.app[DIRECTORY].check_password_policy(
            password,
            first_name=names.get("first_name", ""),
            last_name=names.get("last_name", ""),
            identifier=session.address if session else "",
        )
    except DirectoryClientError:
        return web.json_response(
            {
                "available": False,
                "acceptable": False,
                "problems": [],
                "message": "Vérification en direct indisponible : le mot de passe sera vérifié à l'envoi.",
            },
            status=503,
        )
    return web.json_response(
        {"available": True, "acceptable": acceptable, "problems": list(problems), "rules": rules}
    )


# --- lost password ------------------------------------------------------------------------------------


async def _forgot_page(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    session = await ensure_session(request)
    captcha.new_challenge(session)  # every display of the form gets a fresh code
    return await render(
        request,
        "auth/forgot.html",
        {
            "nav": "",
            "values": values or {"identifiant": "", "nom": "", "prenom": "", "naissance": ""},
            "error": error,
            "captcha_version": int(dt.datetime.now().timestamp() * 1000),
            "captcha_length": captcha.LENGTH,
        },
        status,
    )


async def forgot_form(request: web.Request) -> web.StreamResponse:
    return await _forgot_page(request)


async def forgot_submit(request: web.Request) -> web.StreamResponse:
    session = await ensure_session(request)
    form = await request.post()
    # The NUMEN is never echoed back into the page.
    values = {name: _field(form, name, 200).strip() for name in ("identifiant", "nom", "prenom", "naissance")}
    numen = _field(form, "numen", 64)
    if captcha.blocked(session):
        return await _forgot_page(
            request,
            values=values,
            error="Trop de codes de vérification erronés. Merci de réessayer dans un quart d'heure.",
            status=429,
        )
    if not captcha.check(session, _field(form, "captcha", 32)):
        return await _forgot_page(
            request,
            values=values,
            error="Le code de vérification ne correspond pas. Un nouveau code vous est proposé.",
            status=400,
        )
    if not numen or not values["naissance"]:
        return await _forgot_page(
            request, values=values, error="Indiquez votre NUMEN et votre date de naissance.", status=400
        )
    try:
        message, _ = await request.app[DIRECTORY].request_password_reset(
            identifier=values["identifiant"],
            last_name=values["nom"],
            first_name=values["prenom"],
            numen=numen,
            birth_date=values["naissance"],
            client_address=client_address(request),
        )
    except DirectoryUnavailable:
        return await _forgot_page(request, values=values, error=UNAVAILABLE, status=503)
    except DirectoryClientError as exc:  # malformed NUMEN or date, no identity: says nothing of accounts
        return await _forgot_page(request, values=values, error=str(exc), status=400)
    return await render(request, "auth/forgot_done.html", {"nav": "", "message": message})


async def captcha_image(request: web.Request) -> web.StreamResponse:
    session = await ensure_session(request)
    body = await run_sync(captcha.image_png, captcha.current_answer(session))
    return web.Response(body=body, content_type="image/png")


async def captcha_audio(request: web.Request) -> web.StreamResponse:
    session = await ensure_session(request)
    body = await run_sync(captcha.audio_wav, captcha.current_answer(session))
    return web.Response(
        body=body,
        content_type="audio/wav",
        headers={"Content-Disposition": 'inline; filename="code-de-verification.wav"'},
    )


async def captcha_renew(request: web.Request) -> web.StreamResponse:
    session = await ensure_session(request)
    captcha.new_challenge(session)
    if request.headers.get("X-CSRF-Token"):  # the page's script: it reloads the image and the audio
        return web.Response(status=204)
    raise web.HTTPSeeOther("/mot-de-passe/oublie")


# --- reset link ---------------------------------------------------------------------------------------


async def _reset_page(
    request: web.Request,
    token: str,
    *,
    error: str = "",
    problems: tuple[str, ...] = (),
    invalid: bool = False,
    status: int = 200,
) -> web.Response:
    await ensure_session(request)
    return await render(
        request,
        "auth/reset.html",
        {
            "nav": "",
            "token": token,
            "error": error,
            "problems": problems,
            "invalid": invalid,
            "rules": await password_rules(request),
        },
        status,
    )


_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,200}$")


async def reset_form(request: web.Request) -> web.StreamResponse:
    token = request.query.get("jeton", "")
    if not _TOKEN.match(token):
        return await _reset_page(
            request,
            "",
            error="Ce lien de réinitialisation est incomplet. Copiez l'adresse entière du message reçu, "
            "ou faites une nouvelle demande.",
            invalid=True,
            status=400,
        )
    return await _reset_page(request, token)


async def reset_submit(request: web.Request) -> web.StreamResponse:
    session = await ensure_session(request)
    form = await request.post()
    token = _field(form, "jeton", 200)
    new = _field(form, "nouveau", MAX_PASSWORD)
    confirmation = _field(form, "confirmation", MAX_PASSWORD)
    if not _TOKEN.match(token):
        return await _reset_page(
            request, "", error="Ce lien de réinitialisation est incomplet.", invalid=True, status=400
        )
    if not new:
        return await _reset_page(request, token, error="Indiquez votre nouveau mot de passe.", status=400)
    if new != confirmation:
        return await _reset_page(request, token, error=MISMATCH, status=400)
    try:
        ok, message, problems = await request.app[DIRECTORY].complete_password_reset(
            token, new, client_address(request)
        )
    except DirectoryUnavailable:
        return await _reset_page(request, token, error=UNAVAILABLE, status=503)
    except DirectoryClientError as exc:
        return await _reset_page(request, token, error=str(exc), status=400)
    if ok:
        flash(session, "success", message)
        raise web.HTTPSeeOther("/connexion")
    if problems:
        return await _reset_page(
            request, token, error="Ce mot de passe ne convient pas :", problems=problems, status=400
        )
    return await _reset_page(request, "", error=message, invalid=True, status=410)


# --- sessions -----------------------------------------------------------------------------------------


@login_required
async def sessions_page(request: web.Request) -> web.StreamResponse:
    current = get_session(request)
    rows = [
        {
            "short_id": s.short_id,
            "created": _when(s.created_at),
            "last_seen": _when(s.last_seen),
            "client_address": s.client_address or "inconnue",
            "browser": describe_user_agent(s.user_agent),
            "current": s.id == current.id,
        }
        for s in await run_sync(request.app[SESSIONS].of_account, current.account_id)
    ]
    return await render(request, "auth/sessions.html", {"nav": "", "rows": rows})


@login_required
async def session_end(request: web.Request) -> web.StreamResponse:
    current = get_session(request)
    short_id = _field(await request.post(), "session", 32)
    if short_id == current.short_id:
        await run_sync(request.app[SESSIONS].end, current.id)
        replace_session(request, None)
        raise web.HTTPSeeOther("/connexion?motif=fermee")
    ended = await run_sync(request.app[SESSIONS].end_by_short_id, current.account_id, short_id)
    flash(
        current,
        "success" if ended else "info",
        "La session a été fermée." if ended else "Cette session était déjà terminée.",
    )
    raise web.HTTPSeeOther("/sessions")


@login_required
async def sessions_end_others(request: web.Request) -> web.StreamResponse:
    current = get_session(request)
    ended = await run_sync(request.app[SESSIONS].end_all, current.account_id, keep=current.id)
    if ended:
        text = (
            "Une autre session a été fermée." if ended == 1 else f"{ended} autres sessions ont été fermées."
        )
    else:
        text = "Aucune autre session n'était ouverte."
    flash(current, "success", text)
    raise web.HTTPSeeOther("/sessions")


def setup(app: web.Application) -> None:
    """Add this module's routes."""
    app.router.add_get("/", home)
    app.router.add_get("/connexion", login_form)
    app.router.add_post("/connexion", login_submit)
    app.router.add_post("/deconnexion", logout)
    app.router.add_get("/premiere-connexion", first_login_help)
    app.router.add_get("/premiere-connexion/mot-de-passe", first_change_form)
    app.router.add_post("/premiere-connexion/mot-de-passe", first_change_submit)
    app.router.add_get("/mot-de-passe/changer", change_form)
    app.router.add_post("/mot-de-passe/changer", change_submit)
    app.router.add_post("/mot-de-passe/politique", policy_check)
    app.router.add_get("/mot-de-passe/oublie", forgot_form)
    app.router.add_post("/mot-de-passe/oublie", forgot_submit)
    app.router.add_get("/captcha.png", captcha_image)
    app.router.add_get("/captcha.wav", captcha_audio)
    app.router.add_post("/captcha/nouveau", captcha_renew)
    app.router.add_get("/reinitialisation", reset_form)
    app.router.add_post("/reinitialisation", reset_submit)
    app.router.add_get("/sessions", sessions_page)
    app.router.add_post("/sessions/fermer", session_end)
    app.router.add_post("/sessions/fermer-autres", sessions_end_others)
