"""The help page (`/aide`): whom to contact — the rectorat's help desk and the DSDEN of each
département. The DSDEN come from the directory's reference data (`ListReference`); the rectorat's desk,
which the directory does not know, from `webmail/assistance.toml` (configuration). A logged-in user sees
the DSDEN of their own département first and highlighted.
"""

from __future__ import annotations

import functools
import logging
import tomllib
from pathlib import Path
from typing import Any

from aiohttp import web

from directory.client import DirectoryClientError
from webmail.app import DIRECTORY, get_session, render

log = logging.getLogger("webmail.help")

ASSISTANCE_FILE = Path(__file__).resolve().parent.parent / "assistance.toml"


@functools.cache
def rectorat_contact() -> dict[str, Any]:
    with ASSISTANCE_FILE.open("rb") as handle:
        return tomllib.load(handle)["rectorat"]


async def _user_departement(request: web.Request) -> str:
    session = get_session(request)
    if session is None or not session.authenticated:
        return ""
    code = (session.data.get("profile") or {}).get("departement", "")
    if code:
        return code
    try:
        card = await request.app[DIRECTORY].contact_card(session.account_id)
    except DirectoryClientError:
        return ""
    return card.departement if card is not None else ""


async def help_page(request: web.Request) -> web.StreamResponse:
    departements: list[dict[str, Any]] = []
    unavailable = False
    try:
        reference = await request.app[DIRECTORY].reference()
    except DirectoryClientError:
        log.warning("help page without the DSDEN: directory unavailable")
        unavailable = True
    else:
        departements = [
            {
                "code": d.code,
                "name": d.name,
                "dsden_name": d.dsden_name,
                "city": d.dsden_city,
                "phone": d.dsden_phone,
                "phone_link": "".join(c for c in d.dsden_phone if c.isdigit()),
                "email": d.dsden_email,
                "postal_address": d.dsden_postal_address,
                "fictitious": d.contact_synthetic,
            }
            for d in reference.departements
        ]
    mine = await _user_departement(request)
    # The user's own DSDEN first; the others in the order of their codes.
    departements.sort(key=lambda d: (d["code"] != mine, d["code"]))
    rectorat = rectorat_contact()
    session = get_session(request)
    return await render(
        request,
        "help.html",
        {
            "nav": "",
            "rectorat": {**rectorat, "phone_link": "".join(c for c in rectorat["phone"] if c.isdigit())},
            "departements": departements,
            "mine": mine,
            "unavailable": unavailable,
            "logged_in": bool(session and session.authenticated),
        },
    )


def setup(app: web.Application) -> None:
    """Add this module's routes."""
    app.router.add_get("/aide", help_page)
