"""The webmail's aiohttp application: middlewares, templates, static assets, and the views' routes.

Why aiohttp: the webmail is an asyncio process (eventlet stays inside the nameko services), it needs
server-sent events for real-time mail, multipart uploads and streamed downloads, and grpc.aio for the
directory — aiohttp does all of that in one mature library with no extra server, and aiohttp-jinja2
gives server-rendered pages. The database driver is synchronous pymongo, called through a thread
executor (`run_sync`) so a slow query never blocks other users' requests.

Views live in `webmail.views.*`; each module has a `setup(app)` that adds its routes. Handlers use the
helpers here: `get_session` / `ensure_session`, `login_required`, `render`, `flash`, `run_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from common.config import Settings
from webmail import security
from webmail.sessions import PURGE_INTERVAL_SECONDS, Session, SessionStore

log = logging.getLogger("webmail")

PACKAGE_DIR = Path(__file__).resolve().parent

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", object)
DIRECTORY = web.AppKey("directory", object)
SESSIONS = web.AppKey("sessions", SessionStore)
PUBLISHER = web.AppKey("publisher", object)
#: Per-request state: the session, whether it ended during the request, whether the cookie named a dead one.
SESSION = web.RequestKey("session", object)
SESSION_ENDED = web.RequestKey("session_ended", bool)
SESSION_EXPIRED = web.RequestKey("session_expired", bool)

#: Views, in route order. Each module has `setup(app)`.
VIEW_MODULES = (
    "webmail.views.auth",
    "webmail.views.help",
    "webmail.views.mail",
    "webmail.views.compose",
    "webmail.views.contacts",
    "webmail.views.agenda",
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cookie_name(settings: Settings) -> str:
    """`__Host-` cookies must be Secure, host-only and for path /: the browser enforces all three."""
    return "__Host-webmail" if settings.webmail_cookie_secure else "webmail"


async def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (pymongo) in the default thread pool."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


def client_address(request: web.Request) -> str:
    return request.remote or ""


def get_session(request: web.Request) -> Session | None:
    """The request's session, if its cookie named a live one."""
    return request.get(SESSION)


async def ensure_session(request: web.Request) -> Session:
    """The request's session, creating an anonymous one (and its cookie) if there is none."""
    session = request.get(SESSION)
    if session is None:
        store = request.app[SESSIONS]
        session = await run_sync(store.new, client_address(request), request.headers.get("User-Agent", ""))
        request[SESSION] = session
        request[SESSION_ENDED] = False  # a page shown right after a logout needs its new session
    return session


def replace_session(request: web.Request, session: Session | None) -> None:
    """Make `session` the request's session (after login); None ends it (logout)."""
    request[SESSION] = session
    request[SESSION_ENDED] = session is None


def flash(session: Session, level: str, message: str) -> None:
    """A message shown once on the next page (level: success, info, warning, error)."""
    session.data.setdefault("flash", []).append({"level": level, "message": message})
    session.dirty = True


def login_required(handler: Handler) -> Handler:
    """Only for logged-in users; others go to the login page (htmx requests get a redirect header)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        session = get_session(request)
        if session is None or not session.account_id:
            # A cookie that named no live session: it expired (idle or absolute timeout) or was revoked.
            return _to_login(
                request, "/connexion?motif=expiree" if request.get(SESSION_EXPIRED) else "/connexion"
            )
        if session.must_change_password:
            return _to_login(request, "/premiere-connexion/mot-de-passe")
        return await handler(request)

    return wrapper


def _to_login(request: web.Request, location: str) -> web.StreamResponse:
    if request.headers.get("HX-Request"):
        return web.Response(status=401, headers={"HX-Redirect": location})
    if request.method == "GET":
        raise web.HTTPSeeOther(location)
    raise web.HTTPUnauthorized(text="Session expirée : reconnectez-vous.")


async def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> web.Response:
    """Render a page with what every template needs: the session, its CSRF token, flash messages."""
    session = get_session(request)
    base: dict[str, Any] = {
        "request": request,
        "session": session,
        "csrf_token": session.csrf_token if session else "",
        "settings": request.app[SETTINGS],
        "flashes": [],
        "nav": "",  # base.html compares it; pages of a section override it
    }
    if session is not None and session.data.get("flash"):
        base["flashes"] = session.data.pop("flash")
        session.dirty = True
    base.update(context or {})
    response = aiohttp_jinja2.render_template(template, request, base, status=status)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """French error pages; an unexpected error is logged with its trace, never shown."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/static/") or request.headers.get("HX-Request"):
            raise
        return await _error_page(request, exc.status, exc.text if exc.status != 404 else None)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return await _error_page(request, 500, None)


ERROR_TITLES = {
    400: "Requête invalide",
    401: "Session expirée",
    403: "Action refusée",
    404: "Page introuvable",
    405: "Action non permise",
    413: "Envoi trop volumineux",
    429: "Trop de demandes",
    500: "Erreur inattendue",
    503: "Service momentanément indisponible",
}


async def _error_page(request: web.Request, status: int, detail: str | None) -> web.Response:
    title = ERROR_TITLES.get(status, "Erreur")
    if detail and detail.startswith(f"{status}:"):
        detail = None  # aiohttp's English default text
    if status == 413:
        # aiohttp refuses an over-long body itself, in English; say it in French with the limit.
        limit = request.app[SETTINGS].webmail_max_upload_bytes / (1024 * 1024)
        detail = f"L'envoi dépasse la taille maximale autorisée ({limit:.0f} Mo de pièces jointes)."
    try:
        context = {"status": status, "title": title, "detail": detail}
        return await render(request, "error.html", context, status)
    except Exception:  # the error page itself must not fail
        log.exception("cannot render the error page")
        return web.Response(status=status, text=title, content_type="text/plain", charset="utf-8")


@web.middleware
async def timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`Server-Timing: app;dur=<ms>` on every response: the server's own time, without the network
    (bench/bench_webmail.py reads it; browsers show it in their developer tools)."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        raise
    if not response.prepared:  # a streamed response has sent its headers already
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        security.apply_headers(request, exc)
        raise
    security.apply_headers(request, response)
    return response


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session named by the cookie; afterwards save its data and (re)send or clear the cookie."""
    settings = request.app[SETTINGS]
    name = cookie_name(settings)
    token = request.cookies.get(name, "")
    if token and not request.path.startswith("/static/"):
        request[SESSION] = await run_sync(request.app[SESSIONS].load, token)
        request[SESSION_EXPIRED] = request[SESSION] is None
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        await _finish_session(request, exc, name, settings)
        raise
    await _finish_session(request, response, name, settings)
    return response


async def _finish_session(request: web.Request, response: web.StreamResponse, name: str, settings) -> None:
    session = get_session(request)
    if request.get(SESSION_ENDED):
        response.del_cookie(name, path="/", secure=settings.webmail_cookie_secure, samesite="Lax")
        return
    if session is None:
        return
    if session.dirty:
        await run_sync(request.app[SESSIONS].save_data, session)
    if session.new_cookie:
        response.set_cookie(
            name,
            session.token,
            path="/",
            secure=settings.webmail_cookie_secure,
            httponly=True,
            samesite="Lax",
        )


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse state-changing requests from other origins or without the session's CSRF token."""
    if request.method in security.UNSAFE_METHODS:
        if not security.same_origin(request, request.app[SETTINGS].public_url):
            log.warning("cross-origin %s %s refused", request.method, request.path)
            raise web.HTTPForbidden(text="Requête refusée : elle ne vient pas du webmail.")
        session = get_session(request)
        given = request.headers.get(security.CSRF_HEADER)
        if given is None and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            given = (await request.post()).get(security.CSRF_FIELD)
        if session is None or not security.csrf_token_matches(session.csrf_token, str(given or "")):
            log.warning("%s %s without a valid CSRF token refused", request.method, request.path)
            raise web.HTTPForbidden(text="Formulaire expiré ou invalide : rechargez la page et recommencez.")
    return await handler(request)


def _static_routes(app: web.Application, settings: Settings) -> None:
    assets = Path(settings.webmail_assets_dir)
    app.router.add_static("/static/app/", PACKAGE_DIR / "static", append_version=False)
    for prefix, folder in (
        ("/static/dsfr/", assets / "@gouvfr" / "dsfr" / "dist"),
        ("/static/htmx/", assets / "htmx.org" / "dist"),
    ):
        if folder.is_dir():
            app.router.add_static(prefix, folder)
        else:
            log.warning("front-end assets missing in %s: run `make bootstrap`", folder)


async def _purge_sessions_forever(app: web.Application) -> None:
    while True:
        try:
            purged = await run_sync(app[SESSIONS].purge)
            if purged:
                log.info("purged %d ended sessions", purged)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cannot purge ended sessions; will retry")
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


async def _session_purger(app: web.Application):
    task = asyncio.create_task(_purge_sessions_forever(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings,
    *,
    database: Any,
    directory: Any,
    publisher: Any = None,
) -> web.Application:
    """The webmail application over a database, a directory client and an event publisher."""
    from webmail.session_check import session_check_middleware  # it imports this module

    app = web.Application(
        middlewares=[
            timing_middleware,
            headers_middleware,
            error_middleware,
            session_middleware,
            session_check_middleware,
            csrf_middleware,
        ],
        client_max_size=settings.webmail_max_upload_bytes + 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[DATABASE] = database
    app[DIRECTORY] = directory
    app[PUBLISHER] = publisher
    app[SESSIONS] = SessionStore(
        database,
        idle=dt.timedelta(minutes=settings.webmail_session_idle_minutes),
        absolute=dt.timedelta(hours=settings.webmail_session_max_hours),
    )
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # templates ship with the code: compiled once, not checked on every render
    )
    env.globals["mail_domain"] = settings.mail_domain
    _static_routes(app, settings)
    app.cleanup_ctx.append(_session_purger)
    for module in VIEW_MODULES:
        importlib.import_module(module).setup(app)
    return app
