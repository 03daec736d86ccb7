"""Reading mail: folders, message lists, the reader, actions, search, attachments and live events.

Every handler builds a `Mailbox` for the session's address, so nothing here can name another user's entry
(see webmail/mailbox.py). Pages work without JavaScript: actions are plain forms (POST, then a 303
redirect back with a flash message); static/mail.js adds "select all", live updates and confirmations.

Routes:

- `GET /courrier` → the inbox; `GET /courrier/{folder}?page=&tri=&ordre=` a folder's list;
- `GET /courrier/{folder}/{entry_id}` the reader (marks the message read; `?images=1` shows remote
  images of this message);
- `GET /courrier/message/{entry_id}/corps?images=0|1` the sanitised body, for the reader's sandboxed
  frame, with `security.message_body_csp`;
- `GET /courrier/message/{entry_id}/piece/{part}` an attachment, always as a download;
- `GET /courrier/message/{entry_id}/ligne` one list row (the live update inserts it);
- `POST /courrier/actions` marks, flags, moves, deletes, restores, reports (spam / not spam);
- `GET /courrier/recherche?q=&de=&objet=&depuis=&jusqua=&dossier=&page=`;
- `GET /courrier/dossiers` and `POST /courrier/dossiers[/{folder}/renommer|supprimer]` own folders;
  `POST /courrier/corbeille/vider` empties Trash;
- `GET /evenements` the session's live events (server-sent events).

Quarantine: a message with a `virus` field is shown as text only, with a warning; its attachments are
listed but cannot be downloaded (403), whatever folder it is in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import urllib.parse
from typing import Any

from aiohttp import web

from common.db import BlobNotFound, ensure_indexes
from common.mailstore import DRAFTS, INBOX, JUNK, QUARANTINE, SYSTEM_FOLDERS, TRASH
from webmail import rendering, security
from webmail.app import (
    DATABASE,
    PUBLISHER,
    SESSIONS,
    SETTINGS,
    cookie_name,
    flash,
    get_session,
    login_required,
    render,
    run_sync,
)
from webmail.french import long_date, paris, short_date
from webmail.mailbox import FOLDER_LABELS, SORTS, FolderError, Mailbox
from webmail.realtime import LiveHub
from webmail.sessions import token_hash
from webmail.views.agenda import invitation_panel

log = logging.getLogger("webmail.mail")

LIVE_HUB = web.AppKey("live_hub", object)
#: A live event stream re-checks its session this often, and sends a comment to keep proxies open.
STREAM_CHECK_SECONDS = 25.0

SORT_LABELS = {"date": "Date", "expediteur": "Expéditeur", "objet": "Objet", "taille": "Taille"}

#: Actions of the list and reader forms: action -> French confirmation (count formatted in).
ACTIONS = {
    "lu": "{n} message(s) marqué(s) comme lu(s).",
    "non_lu": "{n} message(s) marqué(s) comme non lu(s).",
    "suivre": "{n} message(s) marqué(s) comme suivi(s).",
    "ne_plus_suivre": "{n} message(s) ne sont plus suivis.",
    "deplacer": "{n} message(s) déplacé(s) vers « {dossier} ».",
    "supprimer": "",
    "restaurer": "{n} message(s) restauré(s).",
    "indesirable": "{n} message(s) signalé(s) comme indésirable(s) et déplacé(s) vers « Indésirables ».",
    "non_indesirable": "{n} message(s) signalé(s) comme légitime(s) et remis dans la boîte de réception.",
}


# --- formatting -------------------------------------------------------------------------------------


def iso(moment: dt.datetime | None) -> str:
    local = paris(moment)
    return local.isoformat(timespec="minutes") if local else ""


def human_size(size: int | None) -> str:
    size = int(size or 0)
    if size < 1024:
        return f"{size} o"
    if size < 1024 * 1024:
        return f"{math.ceil(size / 1024)} ko"
    return f"{size / (1024 * 1024):.1f} Mo".replace(".", ",")


def person(address: dict[str, str] | None) -> str:
    if not address:
        return "(expéditeur inconnu)"
    return address.get("name") or address.get("address") or "(expéditeur inconnu)"


def people(addresses: list[dict[str, str]] | None) -> str:
    return ", ".join(person(a) for a in (addresses or [])) or "(aucun destinataire)"


def full_address(address: dict[str, str] | None) -> str:
    if not address:
        return ""
    name, mail = address.get("name", ""), address.get("address", "")
    return f"{name} <{mail}>" if name and mail else mail or name


def row(entry: dict[str, Any], folder_label: str = "") -> dict[str, Any]:
    """What the list template shows of an entry."""
    flags = entry.get("flags") or {}
    folder = entry.get("folder", INBOX)
    correspondents = people(entry.get("to")) if folder in ("Sent", "Drafts") else person(entry.get("from"))
    return {
        "id": entry["_id"],
        "folder": folder,
        "folder_label": folder_label,
        "who": correspondents,
        "who_address": "" if folder in ("Sent", "Drafts") else (entry.get("from") or {}).get("address", ""),
        "subject": entry.get("subject") or "(sans objet)",
        "snippet": entry.get("snippet", ""),
        "date": short_date(entry.get("received_at")),
        "date_long": long_date(entry.get("received_at")),
        "date_iso": iso(entry.get("received_at")),
        "size": human_size(entry.get("size")),
        "has_attachments": bool(entry.get("has_attachments")),
        "seen": bool(flags.get("seen")),
        "flagged": bool(flags.get("flagged")),
        "answered": bool(flags.get("answered")),
        "virus": bool(entry.get("virus")),
        # a draft opens in the editor (views/compose.py resumes it)
        "url": f"/ecrire?brouillon={entry['_id']}"
        if folder == DRAFTS
        else f"/courrier/{urllib.parse.quote(folder, safe='')}/{entry['_id']}",
    }


# --- helpers ------------------------------------------------------------------------------------------


def _mailbox(request: web.Request) -> Mailbox:
    session = get_session(request)
    return Mailbox(request.app[DATABASE], session.address)


async def _entry_or_404(request: web.Request) -> tuple[Mailbox, dict]:
    """The user's mailbox and the entry the URL names; 404 when it is not theirs or does not exist."""
    box = _mailbox(request)
    entry = await run_sync(box.entry, request.match_info["entry_id"])
    if entry is None:
        raise web.HTTPNotFound()
    return box, entry


def _int(value: str | None, default: int, low: int = 1, high: int = 100_000) -> int:
    try:
        return max(low, min(high, int(value or default)))
    except ValueError:
        return default


def _safe_return(target: str | None, fallback: str) -> str:
    """Only a local path of the mail pages may be a redirect target (no open redirect)."""
    if (
        target
        and target.startswith("/courrier")
        and "//" not in target
        and "\\" not in target
        and all(" " < c < "\x7f" for c in target)
    ):
        return target
    return fallback


async def _folders_context(
    request: web.Request, box: Mailbox, current: str, totals: bool = False
) -> dict[str, Any]:
    folders = await run_sync(box.folders, totals)
    unread_inbox = next((f.unread for f in folders if f.id == INBOX), 0)
    return {
        "nav": "mail",
        "folders": folders,
        "current_folder": current,
        "move_targets": [f for f in folders if f.id not in (QUARANTINE, TRASH)],
        "unread_inbox": unread_inbox,
        "labels": {f.id: f.label for f in folders},
    }


def _pages(page: int, total_pages: int) -> list[int | None]:
    """Page numbers to show, None for a gap: 1 … 4 5 6 … 20."""
    shown = {1, total_pages, page - 1, page, page + 1}
    numbers = sorted(n for n in shown if 1 <= n <= total_pages)
    out: list[int | None] = []
    for n in numbers:
        if out and n - (out[-1] or 0) > 1:
            out.append(None)
        out.append(n)
    return out


def _pagination(
    base: str, params: dict[str, str], page: int, total: int | None, page_size: int
) -> dict[str, Any]:
    """Pages around `page`; `total` None means more results follow but were not counted (a search)."""
    total_pages = page + 1 if total is None else max(1, math.ceil(total / page_size))

    def url(n: int) -> str:
        query = {k: v for k, v in params.items() if v}
        query["page"] = str(n)
        return f"{base}?{urllib.parse.urlencode(query)}"

    return {
        "page": page,
        "total_pages": total_pages,
        "numbers": _pages(page, total_pages),
        "url": url,
        "last_known": total is not None,
    }


# --- folder list --------------------------------------------------------------------------------------


@login_required
async def mail_home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(f"/courrier/{INBOX}")


@login_required
async def folder_page(request: web.Request) -> web.Response:
    box = _mailbox(request)
    folder = request.match_info["folder"]
    label = await run_sync(box.folder_label, folder)
    if label is None:
        raise web.HTTPNotFound()
    settings = request.app[SETTINGS]
    page = _int(request.query.get("page"), 1)
    sort = request.query.get("tri", "date")
    sort = sort if sort in SORTS else "date"
    order = "asc" if request.query.get("ordre") == "asc" else "desc"
    page_size = settings.webmail_page_size
    context = await _folders_context(request, box, folder)
    known = next((f.total for f in context["folders"] if f.id == folder), None)
    entries, total = await run_sync(box.page, folder, page, sort, order, page_size, known)
    params = {"tri": sort if sort != "date" else "", "ordre": order if order != "desc" else ""}
    base = f"/courrier/{urllib.parse.quote(folder, safe='')}"
    current_url = base + ("?" + request.query_string if request.query_string else "")
    context.update(
        {
            "folder": folder,
            "folder_label": label,
            "unread": next((f.unread for f in context["folders"] if f.id == folder), 0),
            "rows": [row(e) for e in entries],
            "total": total,
            "sort": sort,
            "order": order,
            "sort_labels": SORT_LABELS,
            "sort_url": lambda key: _sort_url(base, key, sort, order),
            "pagination": _pagination(base, params, page, total, page_size),
            "current_url": current_url,
            "live": page == 1 and sort == "date" and order == "desc",
            "show_folder": False,
            "is_trash": folder == TRASH,
            "is_junk": folder == JUNK,
            "is_quarantine": folder == QUARANTINE,
        }
    )
    return await render(request, "mail/folder.html", context)


def _sort_url(base: str, key: str, sort: str, order: str) -> str:
    if key == sort:
        new_order = "asc" if order == "desc" else "desc"
    else:
        new_order = "desc" if key in ("date", "taille") else "asc"
    query = {"tri": key, "ordre": new_order}
    return f"{base}?{urllib.parse.urlencode(query)}"


@login_required
async def row_fragment(request: web.Request) -> web.Response:
    """One `<tr>` of the list, for the live update of an open folder (same markup as the page)."""
    _, entry = await _entry_or_404(request)
    return await render(request, "mail/row.html", {"r": row(entry), "show_folder": False})


# --- reader -------------------------------------------------------------------------------------------


@login_required
async def read_page(request: web.Request) -> web.Response:
    box, entry = await _entry_or_404(request)
    folder = entry.get("folder", INBOX)
    if folder != request.match_info["folder"]:
        # the message was moved since the link was made: show it where it is
        raise web.HTTPSeeOther(f"/courrier/{urllib.parse.quote(folder, safe='')}/{entry['_id']}")
    await run_sync(box.mark_read, entry)
    infected = bool(entry.get("virus"))
    allow_images = request.query.get("images") == "1" and not infected
    try:
        raw = await run_sync(box.raw, entry)
        body = await run_sync(rendering.body, raw, allow_remote_images=allow_images, text_only=infected)
    except BlobNotFound:
        log.error("raw message missing", extra={"entry_id": entry["_id"]})
        body = rendering.Body("text", "")
        raw_missing = True
    else:
        raw_missing = False
    invitation = None if raw_missing or infected else await invitation_panel(request, box, entry, raw)
    context = await _folders_context(request, box, folder)
    labels = context["labels"]
    spam = entry.get("spam") or {}
    context.update(
        {
            "entry": entry,
            "folder": folder,
            "folder_label": labels.get(folder, FOLDER_LABELS.get(folder, folder)),
            "folder_url": f"/courrier/{urllib.parse.quote(folder, safe='')}",
            "subject": entry.get("subject") or "(sans objet)",
            "sender": full_address(entry.get("from")),
            "to": ", ".join(full_address(a) for a in entry.get("to") or []),
            "cc": ", ".join(full_address(a) for a in entry.get("cc") or []),
            "date_long": long_date(entry.get("date") or entry.get("received_at")),
            "date_iso": iso(entry.get("date") or entry.get("received_at")),
            "attachments": [
                {
                    **a,
                    "size_label": human_size(a.get("size")),
                    "url": _attachment_url(entry["_id"], a["part"]),
                }
                for a in entry.get("attachments") or []
            ],
            "body": body,
            "raw_missing": raw_missing,
            "body_url": f"/courrier/message/{entry['_id']}/corps?images={'1' if allow_images else '0'}",
            "images_url": f"/courrier/{urllib.parse.quote(folder, safe='')}/{entry['_id']}?images=1",
            "allow_images": allow_images,
            "infected": infected,
            "signature": (entry.get("virus") or {}).get("signature", ""),
            "is_junk": folder == JUNK,
            # the reasons of a junk verdict: a message moved to Junk by its reader has none to show
            "spam_reasons": (
                spam.get("reasons", []) if folder == JUNK and spam.get("verdict") == "spam" else []
            ),
            "is_trash": folder == TRASH,
            "is_quarantine": folder == QUARANTINE,
            "is_draft": folder == DRAFTS,
            "flagged": bool((entry.get("flags") or {}).get("flagged")),
            "current_url": f"/courrier/{urllib.parse.quote(folder, safe='')}/{entry['_id']}",
            "unread": next((f.unread for f in context["folders"] if f.id == folder), 0),
            # calendar invitations, replies and cancellations (views/agenda.py)
            "invitation": invitation,
        }
    )
    return await render(request, "mail/read.html", context)


def _attachment_url(entry_id: str, part: int) -> str:
    return f"/courrier/message/{entry_id}/piece/{int(part)}"


@login_required
async def body_frame(request: web.Request) -> web.Response:
    """The sanitised body as a document of its own, for `<iframe sandbox>`; never a script."""
    box, entry = await _entry_or_404(request)
    infected = bool(entry.get("virus"))
    allow_images = request.query.get("images") == "1" and not infected
    try:
        raw = await run_sync(box.raw, entry)
    except BlobNotFound as exc:
        raise web.HTTPNotFound() from exc
    body = await run_sync(rendering.body, raw, allow_remote_images=allow_images, text_only=infected)
    fragment = (
        body.content if body.kind == "html" else f'<div style="white-space: pre-wrap">{body.content}</div>'
    )
    response = web.Response(text=rendering.body_document(fragment), content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = security.message_body_csp(allow_images)
    response.headers["Cache-Control"] = "no-store"
    return response


@login_required
async def attachment_download(request: web.Request) -> web.Response:
    box, entry = await _entry_or_404(request)
    if entry.get("virus"):
        raise web.HTTPForbidden(
            text="Ce message contient un virus : ses pièces jointes ne peuvent pas être téléchargées."
        )
    try:
        part = int(request.match_info["part"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    listed = next((a for a in entry.get("attachments") or [] if a.get("part") == part), None)
    if listed is None:
        raise web.HTTPNotFound()
    try:
        raw = await run_sync(box.raw, entry)
    except BlobNotFound as exc:
        raise web.HTTPNotFound() from exc
    found = await run_sync(rendering.attachment, raw, part)
    if found is None:
        raise web.HTTPNotFound()
    data, _content_type = found
    # Always a download, never rendered by the browser: a generic type, nosniff, and a sandbox CSP in
    # case a browser opened it anyway.
    return web.Response(
        body=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": rendering.content_disposition(listed.get("filename", "")),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "no-store",
        },
    )


# --- actions ------------------------------------------------------------------------------------------


@login_required
async def actions(request: web.Request) -> web.Response:
    form = await request.post()
    session = get_session(request)
    box = _mailbox(request)
    folder = str(form.get("dossier", INBOX))
    back = _safe_return(str(form.get("retour", "")), f"/courrier/{urllib.parse.quote(folder, safe='')}")
    action = str(form.get("action", ""))
    ids = [str(v) for v in form.getall("ids", [])]
    if action not in ACTIONS:
        flash(session, "error", "Action inconnue.")
        raise web.HTTPSeeOther(back)
    if not ids:
        flash(session, "warning", "Sélectionnez au moins un message.")
        raise web.HTTPSeeOther(back)
    message = ACTIONS[action]
    extra: dict[str, str] = {}
    leaving = False  # the message shown by the reader is no longer in its folder
    if action in ("lu", "non_lu"):
        count = await run_sync(box.set_flags, ids, seen=action == "lu")
        if action == "non_lu" and _is_reader(back):
            back = _folder_of(back)
    elif action in ("suivre", "ne_plus_suivre"):
        count = await run_sync(box.set_flags, ids, flagged=action == "suivre")
    elif action == "deplacer":
        target = str(form.get("dossier_cible", ""))
        if not target:
            flash(session, "warning", "Choisissez le dossier vers lequel déplacer les messages.")
            raise web.HTTPSeeOther(back)
        try:
            count = await run_sync(box.move, ids, target)
        except FolderError as exc:
            flash(session, "error", str(exc))
            raise web.HTTPSeeOther(back) from None
        extra["dossier"] = await run_sync(box.folder_label, target) or target
        leaving = True
    elif action == "supprimer":
        moved, gone = await run_sync(box.delete, ids)
        count = moved + gone
        parts = []
        if moved:
            parts.append(f"{moved} message(s) placé(s) dans la corbeille.")
        if gone:
            parts.append(f"{gone} message(s) supprimé(s) définitivement.")
        message = " ".join(parts) or "Aucun message supprimé."
        leaving = True
    elif action == "restaurer":
        count = await run_sync(box.restore, ids)
        leaving = True
    else:
        label = "spam" if action == "indesirable" else "ham"
        reported = await run_sync(box.report, ids, label)
        count = len(reported)
        await _publish_feedback(request, reported, label)
        leaving = True
    if leaving and _is_reader(back):
        back = _folder_of(back)
    flash(session, "success", message.format(n=count, **extra))
    raise web.HTTPSeeOther(back)


def _is_reader(url: str) -> bool:
    return url.split("?")[0].count("/") >= 3


def _folder_of(url: str) -> str:
    return "/".join(url.split("?")[0].split("/")[:3])


async def _publish_feedback(request: web.Request, reported: list[dict[str, str]], label: str) -> None:
    """`mail.feedback` for the spam service, one per reported message (docs/events.md)."""
    publisher = request.app[PUBLISHER]
    session = get_session(request)
    if publisher is None:
        return
    for item in reported:
        payload = {
            "account_id": session.account_id,
            "message_id": item["message_id"],
            "label": label,
            "mailbox": session.address,
        }
        if item.get("sender"):
            payload["sender"] = item["sender"]
        try:
            await run_sync(publisher.publish, "mail.feedback", payload)
        except Exception:  # the move is done; the report is lost, which the user cannot fix
            log.exception("mail.feedback not published", extra={"message_id": item["message_id"]})


# --- own folders --------------------------------------------------------------------------------------


@login_required
async def folders_page(request: web.Request) -> web.Response:
    box = _mailbox(request)
    context = await _folders_context(request, box, "", totals=True)
    context["own"] = [f for f in context["folders"] if not f.system]
    return await render(request, "mail/folders.html", context)


@login_required
async def folder_create(request: web.Request) -> web.Response:
    form = await request.post()
    session = get_session(request)
    box = _mailbox(request)
    name = str(form.get("nom", ""))
    try:
        folder_id = await run_sync(box.create_folder, name)
    except FolderError as exc:
        flash(session, "error", str(exc))
        raise web.HTTPSeeOther("/courrier/dossiers") from None
    flash(session, "success", f"Dossier « {' '.join(name.split())} » créé.")
    raise web.HTTPSeeOther(f"/courrier/{folder_id}")


@login_required
async def folder_rename(request: web.Request) -> web.Response:
    form = await request.post()
    session = get_session(request)
    box = _mailbox(request)
    try:
        await run_sync(box.rename_folder, request.match_info["folder"], str(form.get("nom", "")))
    except FolderError as exc:
        flash(session, "error", str(exc))
    else:
        flash(session, "success", "Dossier renommé.")
    raise web.HTTPSeeOther("/courrier/dossiers")


@login_required
async def folder_delete(request: web.Request) -> web.Response:
    session = get_session(request)
    box = _mailbox(request)
    try:
        moved = await run_sync(box.delete_folder, request.match_info["folder"])
    except FolderError as exc:
        flash(session, "error", str(exc))
    else:
        flash(session, "success", f"Dossier supprimé ; {moved} message(s) placé(s) dans la corbeille.")
    raise web.HTTPSeeOther("/courrier/dossiers")


@login_required
async def empty_trash(request: web.Request) -> web.Response:
    session = get_session(request)
    count = await run_sync(_mailbox(request).empty_trash)
    flash(session, "success", f"Corbeille vidée : {count} message(s) supprimé(s) définitivement.")
    raise web.HTTPSeeOther(f"/courrier/{TRASH}")


# --- search -------------------------------------------------------------------------------------------


def _date_param(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@login_required
async def search_page(request: web.Request) -> web.Response:
    box = _mailbox(request)
    query = {
        k: request.query.get(k, "").strip()[:200] for k in ("q", "de", "objet", "depuis", "jusqua", "dossier")
    }
    context = await _folders_context(request, box, "")
    folder_ids = {f.id for f in context["folders"]}
    if query["dossier"] not in folder_ids:
        query["dossier"] = ""
    since, until = _date_param(query["depuis"]), _date_param(query["jusqua"])
    errors = {"depuis": "", "jusqua": ""}
    if query["depuis"] and since is None:
        errors["depuis"] = "Date invalide : utilisez le format JJ/MM/AAAA."
    if query["jusqua"] and until is None:
        errors["jusqua"] = "Date invalide : utilisez le format JJ/MM/AAAA."
    if since and until and since > until:
        errors["jusqua"] = "La date de fin doit suivre la date de début."
    searched = any(query[k] for k in ("q", "de", "objet", "depuis", "jusqua")) and not any(errors.values())
    page = _int(request.query.get("page"), 1)
    page_size = request.app[SETTINGS].webmail_page_size
    rows, total = [], 0
    if searched:
        entries, total = await run_sync(
            box.search,
            text=query["q"],
            sender=query["de"],
            subject=query["objet"],
            since=since,
            until=until,
            folder=query["dossier"],
            page=page,
            page_size=page_size,
        )
        rows = [row(e, context["labels"].get(e.get("folder", ""), "")) for e in entries]
    context.update(
        {
            "query": query,
            "errors": errors,
            "searched": searched,
            "rows": rows,
            "total": total,
            "page_size": page_size,
            "pagination": _pagination("/courrier/recherche", query, page, total, page_size),
            "current_url": "/courrier/recherche?" + request.query_string,
            "show_folder": True,
        }
    )
    return await render(request, "mail/search.html", context)


# --- live events --------------------------------------------------------------------------------------


@login_required
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events of the session's mailbox: `new_mail` (docs/events.md, "Live notifications")."""
    session = get_session(request)
    hub: LiveHub | None = request.app[LIVE_HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    security.apply_headers(request, response)
    await response.prepare(request)
    await response.write(b"retry: 5000\n: ouvert\n\n")
    if hub is None:
        return response
    stream = hub.subscribe(session.address)
    mailbox = _mailbox(request)
    token = request.cookies.get(cookie_name(request.app[SETTINGS]), "")
    try:
        while True:
            try:
                notification = await asyncio.wait_for(stream.get(), STREAM_CHECK_SECONDS)
                if notification is None:  # the process is shutting down
                    break
            except TimeoutError:
                if not await run_sync(_session_alive, request, token):
                    await response.write(b'event: session\ndata: {"etat": "expiree"}\n\n')
                    break
                await response.write(b": ping\n\n")
                continue
            if notification.get("type") == "ready":
                await response.write(b"event: pret\ndata: {}\n\n")
                continue
            # Counted here, for the mailboxes a browser is watching, rather than by notify for every
            # delivery; after the entry was stored (notify publishes once it is), so it includes it.
            folder = str(notification.get("folder", ""))
            try:
                unread = await run_sync(mailbox.unread, folder)
            except Exception:  # the stream ends; the browser reconnects and reloads what it shows
                log.warning("cannot count the unread messages of a live notification", exc_info=True)
                break
            await response.write(_sse(notification, unread))
    except ConnectionResetError:
        pass  # the browser left
    finally:
        hub.unsubscribe(session.address, stream)
    return response


def _session_alive(request: web.Request, token: str) -> bool:
    """The stream's session still exists and is not idle-expired (read only: a stream is no activity)."""
    store = request.app[SESSIONS]
    doc = store.collection.find_one({"_id": token_hash(token)}, {"last_seen": 1, "expires_at": 1})
    if doc is None:
        return False
    now = dt.datetime.now(dt.UTC)
    last_seen = paris(doc["last_seen"]).astimezone(dt.UTC)
    expires = paris(doc["expires_at"]).astimezone(dt.UTC)
    return now < expires and now - last_seen < store.idle


def _sse(notification: dict[str, Any], unread: int) -> bytes:
    """One `new_mail` event: only what the page shows, the folder's unread count and the row's folder."""
    folder = str(notification.get("folder", ""))
    data = {
        "type": "new_mail",
        "folder": folder,
        "entry_id": str(notification.get("entry_id", "")),
        "from": person(notification.get("from") if isinstance(notification.get("from"), dict) else None),
        "subject": str(notification.get("subject") or "(sans objet)")[:300],
        "unread": unread,
    }
    return f"event: new_mail\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# --- setup --------------------------------------------------------------------------------------------


async def _start(app: web.Application) -> None:
    from webmail.mailbox import INDEXES

    try:
        await run_sync(ensure_indexes, app[DATABASE], INDEXES)
    except Exception:  # an index is an optimisation: the pages work without it
        log.exception("cannot create the mailbox indexes")
    hub = app[LIVE_HUB]
    if hub is not None:
        hub.start()


async def _shutdown(app: web.Application) -> None:
    """End the open event streams, so that a graceful stop does not wait for them."""
    hub = app[LIVE_HUB]
    if hub is not None:
        hub.close_streams()


async def _stop(app: web.Application) -> None:
    hub = app[LIVE_HUB]
    if hub is not None:
        await hub.stop()


def setup(app: web.Application) -> None:
    """Add this module's routes and the live events' consumer."""
    # One consumer thread per process; none for an app without a bus (unit tests pass no publisher).
    app[LIVE_HUB] = LiveHub(app[SETTINGS].amqp_url) if app[PUBLISHER] is not None else None
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_stop)
    app.router.add_get("/evenements", events)
    app.router.add_get("/courrier", mail_home)
    app.router.add_post("/courrier/actions", actions)
    app.router.add_get("/courrier/recherche", search_page)
    app.router.add_get("/courrier/dossiers", folders_page)
    app.router.add_post("/courrier/dossiers", folder_create)
    app.router.add_post("/courrier/dossiers/{folder}/renommer", folder_rename)
    app.router.add_post("/courrier/dossiers/{folder}/supprimer", folder_delete)
    app.router.add_post("/courrier/corbeille/vider", empty_trash)
    app.router.add_get("/courrier/message/{entry_id}/corps", body_frame)
    app.router.add_get("/courrier/message/{entry_id}/ligne", row_fragment)
    app.router.add_get("/courrier/message/{entry_id}/piece/{part}", attachment_download)
    app.router.add_get("/courrier/{folder}", folder_page)
    app.router.add_get("/courrier/{folder}/{entry_id}", read_page)


__all__ = ["SYSTEM_FOLDERS", "setup"]
