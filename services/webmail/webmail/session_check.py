"""Keep logged-in sessions in step with the directory (`GetSessionState`).

A session is checked at most every `CHECK_INTERVAL` (one small RPC per minute and per session, not per
request). It ends when the account no longer exists, is suspended or deleted, must change its password
while the session is a full one, when the account's `session_epoch` moved past the session's (password
changed or reset elsewhere, account suspended, first login reset by an operator), or when the
maintenance mode is on. The user is then sent to `/connexion?motif=…`, which says why.

When the directory cannot be reached the session is kept (reading one's mail does not need the
directory) and the check is retried on the next request, not a minute later, so a revocation takes
effect as soon as the directory answers again.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from directory.client import DirectoryClientError
from webmail.app import DIRECTORY, SESSIONS, Handler, get_session, replace_session, run_sync

log = logging.getLogger("webmail.sessions")

CHECK_INTERVAL = 60.0
CHECKED_KEY = "directory_checked_at"

#: Paths that work without a login: a dropped session continues there as "no session".
PUBLIC_PREFIXES = (
    "/connexion",
    "/premiere-connexion",
    "/aide",
    "/mot-de-passe/oublie",
    "/reinitialisation",
    "/captcha",
    "/static/",
)


async def reason_to_end(request: web.Request, session) -> str:
    """'' when the session may go on, else the `motif` shown on the login page."""
    try:
        state = await request.app[DIRECTORY].session_state(session.account_id)
    except DirectoryClientError as exc:
        log.warning("session check skipped: directory unavailable (%s)", type(exc).__name__)
        return ""
    if not state.exists or state.status == "deleted":
        return "supprime"
    if state.status == "suspended":
        return "suspendu"
    if state.maintenance:
        return "maintenance"
    if state.session_epoch > session.session_epoch:
        return "revoquee"
    if state.must_change_password and not session.must_change_password:
        return "revoquee"
    session.data[CHECKED_KEY] = time.time()
    session.dirty = True
    return ""


@web.middleware
async def session_check_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    session = get_session(request)
    if session is not None and session.account_id:
        last = float(session.data.get(CHECKED_KEY, 0) or 0)
        if time.time() - last >= CHECK_INTERVAL:
            motif = await reason_to_end(request, session)
            if motif:
                log.info("session ended by the directory check", extra={"reason": motif})
                await run_sync(request.app[SESSIONS].end, session.id)
                replace_session(request, None)
                if not request.path.startswith(PUBLIC_PREFIXES):
                    location = f"/connexion?motif={motif}"
                    if request.headers.get("HX-Request"):
                        return web.Response(status=401, headers={"HX-Redirect": location})
                    raise web.HTTPSeeOther(location)
    return await handler(request)
