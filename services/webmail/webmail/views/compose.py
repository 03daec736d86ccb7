"""Writing mail: compose, reply, reply all, forward, drafts, attachments.

Routes:

- `GET /ecrire` — the compose form; `?repondre=<id>`, `?repondre_tous=<id>`, `?transferer=<id>` start
  from a message of the user's mailbox, `?brouillon=<id>` resumes a draft, `?a=<address>` fills To.
- `POST /ecrire` — `action=envoyer` sends through ingest's submission port (webmail.submission);
  `action=brouillon` saves a draft. A send that fails keeps the message as a draft.
- `POST /ecrire/brouillon` — automatic draft saving by static/compose.js (JSON answer: the draft's id
  and its attachments).
- `POST /ecrire/piece-jointe` — one attachment uploaded ahead by compose.js (with a progress bar), kept
  as a blob `upload-<hour>-<hex>` owned by the user until the message is sent or saved as a draft
  (abandoned ones are swept after a day).

The address book routes (`/annuaire…`, `/contacts…`, recipient completion) are in views/contacts.py. A
contact group typed or chosen in À/Cc/Cci (« Groupe : Équipe de direction (5) ») is replaced by its
members (`webmail.contacts.expand_recipient_groups`) before the fields are parsed, for sending and drafts.

Attachments travel in the form as tokens of checkboxes named `garder` (unchecking one removes it):
`u:<upload blob id>` for an upload made by compose.js, `m:<entry id>:<part>` for an attachment of a
message in the user's mailbox (the forwarded message, or the draft being edited). Every token is checked
against the logged-in user: an upload's blob records its owner, an entry is read through
`Mailbox(db, address)`, which refuses another mailbox's entries.

A draft is a raw message in the blob store (`draft-<hex>`) plus an entry in the Drafts folder. Saving a
draft again writes a new one and deletes the old entry and blob (blobs are immutable); sending it deletes
it. The Sent copy of a sent message is made by delivery, as for any submission.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import urllib.parse
from typing import Any

from aiohttp import BodyPartReader, web
from multidict import MultiDictProxy

from common import mailstore
from common.db import BlobNotFound, BlobStore, utcnow
from webmail import submission
from webmail.app import DATABASE, SETTINGS, flash, get_session, login_required, render, run_sync
from webmail.compose import (
    AttachmentData,
    ComposeError,
    Composition,
    Original,
    attachment_part,
    build_message,
    check_composition,
    check_header_text,
    format_recipients,
    forward,
    guess_type,
    human_size,
    message_bytes,
    parse_original,
    parse_recipients,
    reply,
    resume,
)
from webmail.contacts import ContactBook, expand_recipient_groups, has_group
from webmail.french import paris
from webmail.mailbox import Mailbox

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "upload-"
DRAFT_PREFIX = "draft-"


# --- drafts and uploads (blocking: called through run_sync) ------------------------------------------


def save_draft(db, address: str, raw: bytes, previous: str = "") -> str:
    """Store `raw` as a new draft of `address`, delete the `previous` one; returns the new entry id."""
    blob_id = DRAFT_PREFIX + secrets.token_hex(16)
    BlobStore(db).put(
        blob_id, raw, {"content_type": "message/rfc822", "origin": "webmail-draft", "owner": address}
    )
    entry = {
        **mailstore.summarize(raw).to_document(),
        "_id": mailstore.entry_id(blob_id, address, "draft"),
        "message_id": blob_id,
        "mailbox": address,
        "folder": mailstore.DRAFTS,
        "size": len(raw),
        "received_at": utcnow(),
        "envelope_from": address,
        "flags": {"seen": True, "flagged": False, "answered": False},
    }
    mailstore.insert_entries(db, [entry])
    mailstore.add_usage(db, [entry])
    if previous:
        delete_draft(db, address, previous)
    return entry["_id"]


def delete_draft(db, address: str, entry_id: str) -> None:
    """Delete a draft of `address` (entry and blob); anything else named by `entry_id` is left alone."""
    entry = Mailbox(db, address).entry(entry_id)
    if entry is None or entry.get("folder") != mailstore.DRAFTS:
        return
    db.mailbox_entries.delete_one({"_id": entry["_id"]})
    mailstore.mark_changed(db, entry["mailbox"])
    db.mailboxes.update_one({"_id": entry["mailbox"]}, {"$inc": {"used_bytes": -int(entry.get("size", 0))}})
    if str(entry.get("message_id", "")).startswith(DRAFT_PREFIX):
        BlobStore(db).delete(entry["message_id"])


def store_upload(db, address: str, filename: str, content_type: str, data: bytes) -> str:
    """Keep an upload for `address` until it is sent or saved in a draft; returns its blob id.

    The id starts with the hour of the upload (`upload-2026112617-<hex>`) so that `sweep_uploads` finds
    abandoned ones by an `_id` range, which the `_id` index serves."""
    blob_id = f"{UPLOAD_PREFIX}{utcnow():%Y%m%d%H}-{secrets.token_hex(16)}"
    metadata = {
        "origin": "webmail-upload",
        "owner": address,
        "filename": filename,
        "content_type": content_type,
        "uploaded_at": utcnow(),
    }
    BlobStore(db).put(blob_id, data, metadata)
    return blob_id


#: Uploads never sent nor saved in a draft (a closed tab) are deleted after this long.
UPLOAD_MAX_AGE = dt.timedelta(hours=24)
_last_sweep: list[dt.datetime] = []


def sweep_uploads(db, now: dt.datetime | None = None) -> int:
    """Delete uploads older than UPLOAD_MAX_AGE; returns how many. Run at most hourly per process."""
    now = now or utcnow()
    cutoff = f"{UPLOAD_PREFIX}{now - UPLOAD_MAX_AGE:%Y%m%d%H}"
    blobs = BlobStore(db)
    old = [
        doc["_id"]
        for doc in db["blobs.files"].find({"_id": {"$gte": UPLOAD_PREFIX, "$lt": cutoff}}, {"_id": 1})
    ]
    for blob_id in old:
        blobs.delete(blob_id)
    return len(old)


def maybe_sweep_uploads(db) -> None:
    now = utcnow()
    if _last_sweep and now - _last_sweep[0] < dt.timedelta(hours=1):
        return
    _last_sweep[:] = [now]
    removed = sweep_uploads(db, now)
    if removed:
        log.info("abandoned uploads deleted", extra={"count": removed})


def load_upload(db, address: str, blob_id: str) -> AttachmentData | None:
    """An upload of `address` (None if it is someone else's or gone)."""
    if not blob_id.startswith(UPLOAD_PREFIX) or len(blob_id) > 80:
        return None
    blobs = BlobStore(db)
    try:
        metadata = blobs.metadata(blob_id)
        if metadata.get("owner") != address:
            return None
        return AttachmentData(
            metadata.get("filename", "sans-nom"), metadata.get("content_type", ""), blobs.get(blob_id)
        )
    except BlobNotFound:
        return None


def delete_uploads(db, address: str, blob_ids: list[str]) -> None:
    blobs = BlobStore(db)
    for blob_id in blob_ids:
        try:
            if blobs.metadata(blob_id).get("owner") == address:
                blobs.delete(blob_id)
        except BlobNotFound:
            continue


def load_entry(db, address: str, entry_id: str) -> tuple[dict[str, Any], bytes] | None:
    """An entry of the user's mailbox and its raw message, or None. A message the antivirus flagged is
    never a source: replying to it or forwarding it would send its content (or its attachments) on."""
    mailbox = Mailbox(db, address)
    entry = mailbox.entry(entry_id)
    if entry is None or entry.get("virus") or entry.get("folder") == mailstore.QUARANTINE:
        return None
    try:
        return entry, mailbox.raw(entry)
    except BlobNotFound:
        return None


def resolve_tokens(db, address: str, tokens: list[str]) -> list[tuple[str, AttachmentData]]:
    """The attachments named by `garder` tokens (see the module docstring) that the user may use."""
    found: list[tuple[str, AttachmentData]] = []
    raws: dict[str, bytes | None] = {}
    for token in dict.fromkeys(tokens):  # each once, in order
        kind, _, rest = token.partition(":")
        attachment = None
        if kind == "u":
            attachment = load_upload(db, address, rest)
        elif kind == "m":
            entry_id, _, part = rest.rpartition(":")
            if not part.isdigit() or len(part) > 6:
                continue
            if entry_id not in raws:
                loaded = load_entry(db, address, entry_id)
                raws[entry_id] = loaded[1] if loaded else None
            raw = raws[entry_id]
            if raw is not None:
                attachment = attachment_part(raw, int(part))
        if attachment is not None:
            found.append((token, attachment))
    return found


def upload_filename(name: str) -> str:
    """The name of an uploaded file: browsers percent-encode `"` (and some clients every non-ASCII
    character) in multipart filenames; only the last path component is kept (old browsers sent paths)."""
    name = urllib.parse.unquote(name or "")
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip()


# --- the form ---------------------------------------------------------------------------------------


def _user(request: web.Request) -> tuple[str, str]:
    session = get_session(request)
    assert session is not None
    return session.address.lower(), session.display_name or ""


def _form_fields(form: MultiDictProxy) -> dict[str, str]:
    return {
        "a": str(form.get("a", "")),
        "cc": str(form.get("cc", "")),
        "cci": str(form.get("cci", "")),
        "objet": str(form.get("objet", "")),
        "texte": str(form.get("texte", "")),
        "en_reponse_a": str(form.get("en_reponse_a", "")),
        "references": str(form.get("references", "")),
        "brouillon": str(form.get("brouillon", "")),
        "origine": str(form.get("origine", "")),
    }


def _fields_of(composition: Composition, **extra: str) -> dict[str, str]:
    return {
        "a": format_recipients(composition.to),
        "cc": format_recipients(composition.cc),
        "cci": format_recipients(composition.bcc),
        "objet": composition.subject,
        "texte": composition.body,
        "en_reponse_a": composition.in_reply_to,
        "references": " ".join(composition.references),
        "brouillon": "",
        "origine": "",
        **extra,
    }


def _attachment_rows(entry_id: str, original: Original) -> list[dict[str, str]]:
    return [
        {"token": f"m:{entry_id}:{index}", "filename": a.filename, "size": human_size(a.size)}
        for index, a in original.attachments
    ]


async def _composition_from_form(request: web.Request, form: MultiDictProxy) -> tuple[Composition, list[str]]:
    """The message the form describes, and the uploads it consumes; raises ComposeError."""
    address, _ = _user(request)
    settings = request.app[SETTINGS]
    fields = _form_fields(form)
    if any(has_group(fields[key]) for key in ("a", "cc", "cci")):  # « Groupe : … » → its members
        fields = await run_sync(expand_recipient_groups, ContactBook(request.app[DATABASE]), address, fields)
    composition = Composition(
        to=parse_recipients(fields["a"], "À"),
        cc=parse_recipients(fields["cc"], "Cc"),
        bcc=parse_recipients(fields["cci"], "Cci"),
        subject=check_header_text(fields["objet"], "Objet"),
        body=fields["texte"],
        in_reply_to=check_header_text(fields["en_reponse_a"], "En réponse à", 998),
        references=check_header_text(fields["references"], "Références", 4000).split(),
    )
    tokens = [str(t) for t in form.getall("garder", [])]
    kept = await run_sync(resolve_tokens, request.app[DATABASE], address, tokens)
    composition.attachments.extend(attachment for _, attachment in kept)
    uploads = [token[2:] for token, _ in kept if token.startswith("u:")]
    for item in form.getall("fichiers", []):
        if isinstance(item, web.FileField) and item.filename:
            data = item.file.read(settings.webmail_max_upload_bytes + 1)
            filename = check_header_text(upload_filename(item.filename), "Nom de pièce jointe", 255)
            composition.attachments.append(
                AttachmentData(filename, guess_type(filename, item.content_type), data)
            )
    check_composition(composition, settings.webmail_max_upload_bytes, for_sending=False)
    return composition, uploads


def _raw(request: web.Request, composition: Composition, *, draft: bool) -> bytes:
    address, name = _user(request)
    msg = build_message(
        composition,
        sender_name=name,
        sender_address=address,
        mail_domain=request.app[SETTINGS].mail_domain,
        include_bcc=draft,
    )
    return message_bytes(msg)


async def _store_draft(
    request: web.Request, composition: Composition, previous: str, uploads: list[str]
) -> str:
    address, _ = _user(request)
    db = request.app[DATABASE]
    # Building and parsing messages of up to 25 MB is CPU work: kept off the event loop, like pymongo.
    raw = await run_sync(_raw, request, composition, draft=True)
    draft_id = await run_sync(save_draft, db, address, raw, previous)
    await run_sync(delete_uploads, db, address, uploads)
    return draft_id


async def _draft_rows(request: web.Request, draft_id: str) -> list[dict[str, str]]:
    address, _ = _user(request)
    loaded = await run_sync(load_entry, request.app[DATABASE], address, draft_id)
    if loaded is None:
        return []
    return _attachment_rows(draft_id, await run_sync(parse_original, loaded[1]))


async def _page(
    request: web.Request,
    fields: dict[str, str],
    attachments: list[dict[str, str]],
    *,
    heading: str = "Nouveau message",
    error: str = "",
    status: int = 200,
) -> web.Response:
    settings = request.app[SETTINGS]
    return await render(
        request,
        "mail/compose.html",
        {
            "nav": "mail",
            "heading": heading,
            "form": fields,
            "attachments": attachments,
            "error": error,
            "max_upload": settings.webmail_max_upload_bytes,
            "max_upload_label": human_size(settings.webmail_max_upload_bytes),
        },
        status=status,
    )


# --- handlers ---------------------------------------------------------------------------------------


@login_required
async def compose_page(request: web.Request) -> web.Response:
    address, _ = _user(request)
    db = request.app[DATABASE]
    query = request.query
    for param, kind in (("repondre", "reply"), ("repondre_tous", "reply_all"), ("transferer", "forward")):
        if param in query:
            loaded = await run_sync(load_entry, db, address, query[param])
            if loaded is None:
                raise web.HTTPNotFound()
            entry, raw = loaded
            original = await run_sync(parse_original, raw)
            if kind == "forward":
                composition = forward(original)
                rows = _attachment_rows(entry["_id"], original)
                return await _page(
                    request, _fields_of(composition, origine=entry["_id"]), rows, heading="Transférer"
                )
            composition = reply(original, [address], reply_all=kind == "reply_all")
            heading = "Répondre à tous" if kind == "reply_all" else "Répondre"
            return await _page(request, _fields_of(composition, origine=entry["_id"]), [], heading=heading)
    if "brouillon" in query:
        loaded = await run_sync(load_entry, db, address, query["brouillon"])
        if loaded is None or loaded[0].get("folder") != mailstore.DRAFTS:
            raise web.HTTPNotFound()
        entry, raw = loaded
        original = await run_sync(parse_original, raw)
        fields = _fields_of(resume(original), brouillon=entry["_id"])
        return await _page(request, fields, _attachment_rows(entry["_id"], original), heading="Brouillon")
    composition = Composition()
    to_group = ""
    if query.get("a"):
        try:
            composition.to = parse_recipients(query["a"], "À")
        except ComposeError:
            # A group (« Écrire au groupe ») stays as written, expanded when sent; a bad link: empty form.
            try:
                to_group = check_header_text(query["a"], "À", 200) if has_group(query["a"][:200]) else ""
            except ComposeError:
                to_group = ""
    fields = _fields_of(composition)
    if to_group:
        fields["a"] = to_group + ", "
    return await _page(request, fields, [])


@login_required
async def compose_submit(request: web.Request) -> web.Response:
    address, _ = _user(request)
    settings = request.app[SETTINGS]
    db = request.app[DATABASE]
    form = await request.post()
    fields = _form_fields(form)
    action = str(form.get("action", "envoyer"))
    try:
        composition, uploads = await _composition_from_form(request, form)
    except ComposeError as exc:
        tokens = [str(t) for t in form.getall("garder", [])]
        kept = await run_sync(resolve_tokens, db, address, tokens)
        rows = [{"token": t, "filename": a.filename, "size": human_size(a.size)} for t, a in kept]
        files = [f for f in form.getall("fichiers", []) if isinstance(f, web.FileField) and f.filename]
        note = " Joignez de nouveau les fichiers choisis sur votre ordinateur." if files else ""
        return await _page(request, fields, rows, error=exc.args[0] + note, status=400)

    if action == "brouillon":
        draft_id = await _store_draft(request, composition, fields["brouillon"], uploads)
        flash(get_session(request), "success", "Brouillon enregistré.")
        raise web.HTTPSeeOther(f"/ecrire?brouillon={draft_id}")

    try:
        check_composition(composition, settings.webmail_max_upload_bytes, for_sending=True)
        data = await run_sync(_raw, request, composition, draft=False)
        await run_sync(
            submission.send,
            settings,
            account=address,
            sender=address,
            recipients=composition.recipients,
            data=data,
        )
    except (ComposeError, submission.SubmissionError) as exc:
        message = exc.message if isinstance(exc, submission.SubmissionError) else exc.args[0]
        partial = isinstance(exc, submission.SubmissionError) and exc.partial
        if not partial:
            # Keep what was written: the failed message becomes (or stays) a draft.
            draft_id = await _store_draft(request, composition, fields["brouillon"], uploads)
            fields["brouillon"] = draft_id
            rows = await _draft_rows(request, draft_id)
            return await _page(request, fields, rows, error=message, status=400)
        flash(get_session(request), "warning", message)
    else:
        flash(get_session(request), "success", "Message envoyé.")
    log.info(
        "message sent from the webmail", extra={"account": address, "recipients": len(composition.recipients)}
    )
    if fields["brouillon"]:
        await run_sync(delete_draft, db, address, fields["brouillon"])
    await run_sync(delete_uploads, db, address, uploads)
    if fields["origine"] and composition.in_reply_to:
        await run_sync(Mailbox(db, address).set_flags, [fields["origine"]], answered=True)
    raise web.HTTPSeeOther("/courrier/INBOX")


@login_required
async def autosave(request: web.Request) -> web.Response:
    """compose.js's automatic (or button) draft save: JSON {id, attachments, saved_at} or {error}."""
    form = await request.post()
    fields = _form_fields(form)
    try:
        composition, uploads = await _composition_from_form(request, form)
    except ComposeError as exc:
        return web.json_response({"error": exc.args[0]}, status=400)
    draft_id = await _store_draft(request, composition, fields["brouillon"], uploads)
    rows = await _draft_rows(request, draft_id)
    saved_at = paris(dt.datetime.now(dt.UTC)).strftime("%H:%M")
    return web.json_response({"id": draft_id, "attachments": rows, "saved_at": saved_at})


@login_required
async def upload(request: web.Request) -> web.Response:
    """One attachment sent ahead by compose.js (streamed, so the size limit is checked as it arrives)."""
    address, _ = _user(request)
    limit = request.app[SETTINGS].webmail_max_upload_bytes
    too_big = {"error": f"Fichier trop volumineux : {human_size(limit)} au plus par message."}
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        return web.json_response({"error": "Envoi de fichier invalide."}, status=400)
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name != "fichier" or not part.filename:
            continue
        chunks, size = [], 0
        while chunk := await part.read_chunk(256 * 1024):
            size += len(chunk)
            if size > limit:
                return web.json_response(too_big, status=413)
            chunks.append(chunk)
        try:
            filename = (
                check_header_text(upload_filename(part.filename), "Nom de pièce jointe", 255) or "sans-nom"
            )
        except ComposeError as exc:
            return web.json_response({"error": exc.args[0]}, status=400)
        content_type = guess_type(filename, part.headers.get("Content-Type"))
        blob_id = await run_sync(
            store_upload, request.app[DATABASE], address, filename, content_type, b"".join(chunks)
        )
        await run_sync(maybe_sweep_uploads, request.app[DATABASE])
        return web.json_response(
            {"token": f"u:{blob_id}", "filename": filename, "size": human_size(size), "bytes": size}
        )
    return web.json_response({"error": "Aucun fichier reçu."}, status=400)


def setup(app: web.Application) -> None:
    """Add this module's routes."""
    app.router.add_get("/ecrire", compose_page)
    app.router.add_post("/ecrire", compose_submit)
    app.router.add_post("/ecrire/brouillon", autosave)
    app.router.add_post("/ecrire/piece-jointe", upload)
