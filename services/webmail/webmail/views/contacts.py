"""The academic directory (« Annuaire académique ») and the personal address book (« Mes contacts »).

Routes — academic directory (the directory service, over gRPC):

- `GET /annuaire?q=&etablissement=&departement=&fonction=&page=` — search by name, establishment (UAI),
  département and function, with the number of results and numbered pages;
- `GET /annuaire/fiche/{ident}` — a contact card (function, establishment, commune, département, help
  desk) with « Écrire », « Ajouter à mes contacts » and the colleagues of the same establishment;
- `POST /annuaire/ajouter` — copies a directory entry into the user's contacts (read again from the
  directory by its id: nothing of the card is taken from the form);
- `GET /annuaire/completer?q=` — recipient completion for À/Cc/Cci: the user's groups, personal contacts,
  then the directory (JSON `[{label, value}]`).

Routes — personal contacts (`webmail.contacts.ContactBook`, always with the session's address as owner;
another user's id answers 404 like a missing one):

- `GET /contacts?q=&page=` — the list (search, pages) and the groups;
- `GET|POST /contacts/nouveau`, `GET /contacts/{id}`, `GET|POST /contacts/{id}/modifier`,
  `GET|POST /contacts/{id}/supprimer` (GET asks for confirmation), `POST /contacts/{id}/groupe`;
- `POST /contacts/groupes` (create), `GET /contacts/groupes/{id}`, `POST /contacts/groupes/{id}/renommer`,
  `…/ajouter`, `…/retirer`, `GET|POST /contacts/groupes/{id}/supprimer`;
- `GET|POST /contacts/importer` (a `.vcf` file checked whole, then a preview), `POST
  /contacts/importer/confirmer` (the import itself), `GET /contacts/exporter?groupe=` (a `.vcf`).

The file being imported waits between the preview and the confirmation as an upload blob of the user
(`views.compose.store_upload`, swept after a day if abandoned), named in the form by its id and checked
against the session's address when it is used.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
from typing import Any

from aiohttp import web

from directory.client import DirectoryClientError, DirectoryInvalidInput, DirectoryNotFound
from webmail.app import DATABASE, DIRECTORY, flash, get_session, login_required, render, run_sync
from webmail.contacts import (
    MAX_VCF_BYTES,
    ContactBook,
    ContactError,
    ContactInput,
    ContactNotFound,
    InvalidContact,
    VCardImportError,
    fold,
    group_token,
)
from webmail.rendering import content_disposition
from webmail.views.compose import delete_uploads, load_upload, store_upload

log = logging.getLogger(__name__)

#: Completion answers at most this many entries (groups, contacts and directory together).
COMPLETION_SIZE = 8
SEARCH_PAGE_SIZE = 20
CONTACTS_PAGE_SIZE = 50
#: A UAI (establishment number): 7 digits and a letter, e.g. 0340042L.
_UAI = re.compile(r"^\d{7}[A-Z]$")
_ID = "{id:[0-9a-f]{32}}"
BAD_UAI = "Numéro d'établissement (UAI) invalide : 7 chiffres suivis d'une lettre, par exemple 0340042L."
UNAVAILABLE = "L'annuaire ne répond pas pour le moment. Réessayez dans quelques instants."


def _owner(request: web.Request) -> str:
    session = get_session(request)
    assert session is not None
    return session.address.lower()


def _book(request: web.Request) -> ContactBook:
    return ContactBook(request.app[DATABASE])


def _page_number(value: str) -> int:
    try:
        return max(1, min(int(value or 1), 10_000))
    except ValueError:
        return 1


def _pages(request: web.Request, page: int, total: int, size: int) -> dict[str, Any]:
    """What templates/contacts/_pagination.html needs: the current page, the last, and their URLs."""
    last = max(1, math.ceil(total / size))
    first_shown, last_shown = max(1, page - 2), min(last, page + 2)

    def url(number: int) -> str:
        return str(request.rel_url.update_query(page=str(number)))

    return {
        "current": page,
        "last": last,
        "first_url": url(1),
        "prev_url": url(page - 1) if page > 1 else "",
        "next_url": url(page + 1) if page < last else "",
        "last_url": url(last),
        "numbers": [(n, url(n)) for n in range(first_shown, last_shown + 1)],
    }


# --- academic directory ------------------------------------------------------------------------------


async def _reference(request: web.Request) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    reference = await request.app[DIRECTORY].reference()
    departements = [(d.code, d.name) for d in reference.departements]
    functions = [(f.code, f.label) for f in getattr(reference, "functions", [])]
    return departements, functions


@login_required
async def address_book(request: web.Request) -> web.Response:
    """The academic directory's search page."""
    query = request.query
    criteria = {
        "q": query.get("q", "").strip()[:100],
        "etablissement": query.get("etablissement", "").replace(" ", "").strip().upper()[:20],
        "departement": query.get("departement", "").strip()[:10],
        "fonction": query.get("fonction", "").strip()[:40],
    }
    page = _page_number(query.get("page", "1"))
    directory = request.app[DIRECTORY]
    error, field_error, results, total = "", "", [], 0
    departements: list[tuple[str, str]] = []
    functions: list[tuple[str, str]] = []
    searched = any(criteria.values())
    try:
        departements, functions = await _reference(request)
        if criteria["etablissement"] and not _UAI.match(criteria["etablissement"]):
            field_error = BAD_UAI
        elif searched:
            result = await directory.search(
                criteria["q"],
                establishment_uai=criteria["etablissement"],
                departement=criteria["departement"],
                function=criteria["fonction"],
                page_size=SEARCH_PAGE_SIZE,
                # The directory's page token is the offset of the page's first entry (directory.server).
                page_token=str((page - 1) * SEARCH_PAGE_SIZE) if page > 1 else "",
            )
            results, total = list(result.contacts), result.total
    except DirectoryInvalidInput as exc:
        error = str(exc.args[0]) if exc.args else "Recherche invalide."
    except DirectoryClientError as exc:
        log.warning("address book search failed: %s", type(exc).__name__)
        error = UNAVAILABLE
    labels = {
        "departement": dict(departements).get(criteria["departement"], ""),
        "fonction": dict(functions).get(criteria["fonction"], ""),
    }
    return await render(
        request,
        "contacts/directory.html",
        {
            "nav": "directory",
            "criteria": criteria,
            "labels": labels,
            "searched": searched and not field_error,
            "results": results,
            "total": total,
            "first": (page - 1) * SEARCH_PAGE_SIZE + 1,
            "pages": _pages(request, page, total, SEARCH_PAGE_SIZE) if total > SEARCH_PAGE_SIZE else None,
            "departements": departements,
            "functions": functions,
            "error": error,
            "field_error": field_error,
        },
        status=400 if field_error else 200,
    )


async def _directory_card(request: web.Request, identifier: str) -> Any:
    try:
        card = await request.app[DIRECTORY].contact_card(identifier[:200])
    except (DirectoryNotFound, DirectoryInvalidInput) as exc:
        raise web.HTTPNotFound() from exc
    except DirectoryClientError as exc:
        log.warning("contact card failed: %s", type(exc).__name__)
        raise web.HTTPServiceUnavailable(text=UNAVAILABLE) from exc
    if card is None:
        raise web.HTTPNotFound()
    return card


def _directory_uid(account_id: str) -> str:
    return f"annuaire-{account_id}"


@login_required
async def contact_card(request: web.Request) -> web.Response:
    card = await _directory_card(request, request.match_info["ident"])
    mine = await run_sync(_book(request).find_uid, _owner(request), _directory_uid(card.account_id))
    context = {"nav": "directory", "card": card, "mine": mine}
    return await render(request, "contacts/directory_card.html", context)


@login_required
async def add_from_directory(request: web.Request) -> web.Response:
    """Copy a person of the directory into the user's contacts (or go to the copy made before)."""
    form = await request.post()
    card = await _directory_card(request, str(form.get("ident", "")))
    owner, book = _owner(request), _book(request)
    uid = _directory_uid(card.account_id)
    existing = await run_sync(book.find_uid, owner, uid)
    if existing is not None:
        flash(get_session(request), "info", f"{existing.name} est déjà dans vos contacts.")
        raise web.HTTPSeeOther(f"/contacts/{existing.id}")
    data = ContactInput(
        name=card.display_name,
        given=card.first_name,
        family=card.last_name,
        emails=[card.address],
        organisation=card.establishment_name,
        title=card.function_label,
        uid=uid,
    )
    try:
        contact = await run_sync(book.create, owner, data)
    except ContactError as exc:
        flash(get_session(request), "error", str(exc))
        raise web.HTTPSeeOther(f"/annuaire/fiche/{card.account_id}") from exc
    flash(get_session(request), "success", f"{contact.name} a été ajouté à vos contacts.")
    raise web.HTTPSeeOther(f"/contacts/{contact.id}")


def _completion_sync(book: ContactBook, owner: str, query: str) -> list[dict[str, str]]:
    """The user's groups whose name holds every word typed, then their contacts (each address)."""
    words = fold(query).split()
    found: list[dict[str, str]] = []
    for group in book.list_groups(owner):
        key = fold(group.name)
        if all(w in key for w in words):
            token = group_token(group)
            found.append({"label": token, "value": token, "kind": "groupe"})
    for contact in book.search(owner, query, limit=COMPLETION_SIZE):
        for address in contact.emails:
            found.append(
                {
                    "label": f"{contact.name} <{address}> — Mes contacts",
                    "value": email.utils.formataddr((contact.name, address)),
                    "kind": "contact",
                    "address": address,
                }
            )
    return found[:COMPLETION_SIZE]


@login_required
async def complete(request: web.Request) -> web.Response:
    """[{label, value}] for the To/Cc/Bcc fields: groups, personal contacts, then the directory."""
    query = request.query.get("q", "").strip()[:100]
    if len(query) < 2:
        return web.json_response([])
    personal = await run_sync(_completion_sync, _book(request), _owner(request), query)
    seen = {item.get("address") for item in personal}
    answer = [{"label": item["label"], "value": item["value"]} for item in personal]
    try:
        page = await request.app[DIRECTORY].search(query, page_size=COMPLETION_SIZE)
    except DirectoryClientError as exc:  # completion is a convenience: what we have rather than an error
        log.warning("address book completion failed: %s", type(exc).__name__)
        return web.json_response(answer, status=200 if answer else 503)
    for c in page.contacts:
        if c.address in seen or len(answer) >= COMPLETION_SIZE:
            continue
        answer.append(
            {
                "label": f"{c.display_name} <{c.address}>"
                + (f" — {c.establishment_name}" if c.establishment_name else ""),
                "value": email.utils.formataddr((c.display_name, c.address)),
            }
        )
    return web.json_response(answer)


# --- personal contacts ----------------------------------------------------------------------------------


def _lines(value: Any) -> list[str]:
    return [line.strip() for line in re.split(r"[\r\n,;]+", str(value or "")) if line.strip()]


CONTACT_FIELDS = ("prenom", "nom", "nom_affiche", "adresses", "telephones", "organisme", "fonction", "notes")


def _contact_form(form: Any) -> dict[str, str]:
    return {key: str(form.get(key, ""))[:20_000] for key in CONTACT_FIELDS}


def _contact_input(values: dict[str, str]) -> dict[str, Any]:
    return {
        "given": values["prenom"],
        "family": values["nom"],
        "name": values["nom_affiche"],
        "emails": _lines(values["adresses"]),
        "phones": [line.strip() for line in values["telephones"].splitlines() if line.strip()],
        "organisation": values["organisme"],
        "title": values["fonction"],
        "notes": values["notes"],
    }


def _values_of(contact: Any) -> dict[str, str]:
    return {
        "prenom": contact.given,
        "nom": contact.family,
        "nom_affiche": contact.name,
        "adresses": "\n".join(contact.emails),
        "telephones": "\n".join(contact.phones),
        "organisme": contact.organisation,
        "fonction": contact.title,
        "notes": contact.notes,
    }


async def _load_contact(request: web.Request) -> Any:
    try:
        return await run_sync(_book(request).get, _owner(request), request.match_info["id"])
    except ContactNotFound as exc:
        raise web.HTTPNotFound() from exc


async def _load_group(request: web.Request) -> Any:
    try:
        return await run_sync(_book(request).get_group, _owner(request), request.match_info["id"])
    except ContactNotFound as exc:
        raise web.HTTPNotFound() from exc


def _list_sync(book: ContactBook, owner: str, text: str, page: int) -> tuple[list[Any], int, list[Any]]:
    skip = (page - 1) * CONTACTS_PAGE_SIZE
    contacts = book.search(owner, text, limit=CONTACTS_PAGE_SIZE, skip=skip)
    total = book.count_matching(owner, text)
    return contacts, total, book.list_groups(owner)


@login_required
async def contacts_page(request: web.Request) -> web.Response:
    """« Mes contacts »: the list (searchable, paged) and the groups."""
    text = request.query.get("q", "").strip()[:100]
    page = _page_number(request.query.get("page", "1"))
    contacts, total, groups = await run_sync(_list_sync, _book(request), _owner(request), text, page)
    return await render(
        request,
        "contacts/list.html",
        {
            "nav": "contacts",
            "q": text,
            "contacts": contacts,
            "total": total,
            "groups": groups,
            "pages": _pages(request, page, total, CONTACTS_PAGE_SIZE) if total > CONTACTS_PAGE_SIZE else None,
            "group_error": "",
            "group_name": "",
        },
    )


async def _contact_form_page(
    request: web.Request, values: dict[str, str], *, contact: Any = None, error: Any = None
) -> web.Response:
    return await render(
        request,
        "contacts/form.html",
        {"nav": "contacts", "values": values, "contact": contact, "error": error},
        status=400 if error else 200,
    )


@login_required
async def new_contact(request: web.Request) -> web.Response:
    if request.method == "GET":
        return await _contact_form_page(request, _contact_form({}))
    values = _contact_form(await request.post())
    try:
        data = ContactInput(**_contact_input(values))
        contact = await run_sync(_book(request).create, _owner(request), data)
    except InvalidContact as exc:
        return await _contact_form_page(request, values, error=exc)
    flash(get_session(request), "success", f"Contact « {contact.name} » créé.")
    raise web.HTTPSeeOther(f"/contacts/{contact.id}")


@login_required
async def show_contact(request: web.Request) -> web.Response:
    contact = await _load_contact(request)
    groups = await run_sync(_book(request).list_groups, _owner(request))
    member_of = [g for g in groups if contact.id in g.contact_ids]
    others = [g for g in groups if contact.id not in g.contact_ids]
    return await render(
        request,
        "contacts/contact.html",
        {"nav": "contacts", "contact": contact, "member_of": member_of, "other_groups": others},
    )


@login_required
async def edit_contact(request: web.Request) -> web.Response:
    contact = await _load_contact(request)
    if request.method == "GET":
        return await _contact_form_page(request, _values_of(contact), contact=contact)
    values = _contact_form(await request.post())
    try:
        updated = await run_sync(_book(request).update, _owner(request), contact.id, _contact_input(values))
    except InvalidContact as exc:
        return await _contact_form_page(request, values, contact=contact, error=exc)
    except ContactNotFound as exc:
        raise web.HTTPNotFound() from exc
    flash(get_session(request), "success", f"Contact « {updated.name} » modifié.")
    raise web.HTTPSeeOther(f"/contacts/{contact.id}")


@login_required
async def delete_contact(request: web.Request) -> web.Response:
    contact = await _load_contact(request)
    if request.method == "GET":
        return await render(
            request, "contacts/confirm_delete.html", {"nav": "contacts", "contact": contact, "group": None}
        )
    try:
        await run_sync(_book(request).delete, _owner(request), contact.id)
    except ContactNotFound as exc:
        raise web.HTTPNotFound() from exc
    flash(get_session(request), "success", f"Contact « {contact.name} » supprimé.")
    raise web.HTTPSeeOther("/contacts")


@login_required
async def contact_to_group(request: web.Request) -> web.Response:
    """Add the contact to one of the user's groups (from the contact's page)."""
    contact = await _load_contact(request)
    form = await request.post()
    try:
        group = await run_sync(
            _book(request).add_members, _owner(request), str(form.get("groupe", "")), [contact.id]
        )
    except ContactNotFound:
        flash(get_session(request), "error", "Choisissez un de vos groupes.")
    except InvalidContact as exc:
        flash(get_session(request), "error", str(exc))
    else:
        flash(get_session(request), "success", f"{contact.name} a été ajouté au groupe « {group.name} ».")
    raise web.HTTPSeeOther(f"/contacts/{contact.id}")


def _size(group: Any) -> int:
    return len(group.contact_ids) + len(group.addresses)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count in (0, 1) else many}"


# --- groups ---------------------------------------------------------------------------------------------


@login_required
async def create_group(request: web.Request) -> web.Response:
    form = await request.post()
    name = str(form.get("nom", ""))[:1000]
    owner, book = _owner(request), _book(request)
    try:
        group = await run_sync(book.create_group, owner, name)
    except InvalidContact as exc:
        contacts, total, groups = await run_sync(_list_sync, book, owner, "", 1)
        return await render(
            request,
            "contacts/list.html",
            {
                "nav": "contacts",
                "q": "",
                "contacts": contacts,
                "total": total,
                "groups": groups,
                "pages": None,
                "group_error": str(exc),
                "group_name": name,
            },
            status=400,
        )
    flash(get_session(request), "success", f"Groupe « {group.name} » créé : ajoutez-y des membres.")
    raise web.HTTPSeeOther(f"/contacts/groupes/{group.id}")


def _group_page_sync(book: ContactBook, owner: str, group_id: str) -> dict[str, Any]:
    group = book.get_group(owner, group_id)
    members = book.get_many(owner, group.contact_ids)
    candidates = [c for c in book.list(owner, limit=1000) if c.id not in group.contact_ids]
    return {"group": group, "members": members, "candidates": candidates, "token": group_token(group)}


async def _group_page(
    request: web.Request, *, error: str = "", rename: str | None = None, addresses: str = ""
) -> web.Response:
    try:
        context = await run_sync(_group_page_sync, _book(request), _owner(request), request.match_info["id"])
    except ContactNotFound as exc:
        raise web.HTTPNotFound() from exc
    context.update(
        {
            "nav": "contacts",
            "error": error,
            "rename": context["group"].name if rename is None else rename,
            "addresses": addresses,
        }
    )
    return await render(request, "contacts/group.html", context, status=400 if error else 200)


@login_required
async def show_group(request: web.Request) -> web.Response:
    return await _group_page(request)


@login_required
async def rename_group(request: web.Request) -> web.Response:
    group = await _load_group(request)
    name = str((await request.post()).get("nom", ""))[:1000]
    try:
        renamed = await run_sync(_book(request).update_group, _owner(request), group.id, name=name)
    except InvalidContact as exc:
        return await _group_page(request, error=str(exc), rename=name)
    except ContactNotFound as exc:  # deleted meanwhile
        raise web.HTTPNotFound() from exc
    flash(get_session(request), "success", f"Groupe renommé en « {renamed.name} ».")
    raise web.HTTPSeeOther(f"/contacts/groupes/{group.id}")


@login_required
async def add_to_group(request: web.Request) -> web.Response:
    group = await _load_group(request)
    form = await request.post()
    addresses = str(form.get("adresses", ""))[:20_000]
    members = [str(m) for m in form.getall("membres", [])] + _lines(addresses)
    if not members:
        return await _group_page(request, error="Cochez des contacts ou saisissez des adresses à ajouter.")
    try:
        updated = await run_sync(_book(request).add_members, _owner(request), group.id, members)
    except InvalidContact as exc:
        return await _group_page(request, error=str(exc), addresses=addresses)
    except ContactNotFound as exc:  # deleted meanwhile
        raise web.HTTPNotFound() from exc
    added = _size(updated) - _size(group)
    flash(get_session(request), "success", _plural(added, "membre ajouté", "membres ajoutés") + ".")
    raise web.HTTPSeeOther(f"/contacts/groupes/{group.id}")


@login_required
async def remove_from_group(request: web.Request) -> web.Response:
    group = await _load_group(request)
    members = [str(m) for m in (await request.post()).getall("membres", [])]
    if not members:
        return await _group_page(request, error="Cochez les membres à retirer du groupe.")
    try:
        updated = await run_sync(_book(request).remove_members, _owner(request), group.id, members)
    except InvalidContact as exc:
        return await _group_page(request, error=str(exc))
    except ContactNotFound as exc:
        raise web.HTTPNotFound() from exc
    removed = _size(group) - _size(updated)
    message = _plural(removed, "membre retiré", "membres retirés") + " du groupe."
    flash(get_session(request), "success", message)
    raise web.HTTPSeeOther(f"/contacts/groupes/{group.id}")


@login_required
async def delete_group(request: web.Request) -> web.Response:
    group = await _load_group(request)
    if request.method == "GET":
        return await render(
            request, "contacts/confirm_delete.html", {"nav": "contacts", "contact": None, "group": group}
        )
    try:
        await run_sync(_book(request).delete_group, _owner(request), group.id)
    except ContactNotFound as exc:
        raise web.HTTPNotFound() from exc
    flash(get_session(request), "success", f"Groupe « {group.name} » supprimé (ses contacts restent).")
    raise web.HTTPSeeOther("/contacts")


# --- vCard import and export ------------------------------------------------------------------------


async def _import_page(
    request: web.Request, *, error: str = "", problems: list[str] | None = None, status: int = 200
) -> web.Response:
    return await render(
        request,
        "contacts/import.html",
        {
            "nav": "contacts",
            "error": error,
            "problems": problems or [],
            "max_label": f"{MAX_VCF_BYTES // 1024 // 1024} Mo",
        },
        status=status,
    )


@login_required
async def import_page(request: web.Request) -> web.Response:
    if request.method == "GET":
        return await _import_page(request)
    form = await request.post()
    upload = form.get("fichier")
    if not isinstance(upload, web.FileField) or not upload.filename:
        return await _import_page(request, error="Choisissez un fichier .vcf à importer.", status=400)
    data = upload.file.read(MAX_VCF_BYTES + 1)
    owner, book = _owner(request), _book(request)
    try:
        report = await run_sync(book.preview_vcards, owner, data)
    except VCardImportError as exc:
        return await _import_page(request, error=exc.message, problems=exc.problems, status=400)
    db = request.app[DATABASE]
    token = await run_sync(store_upload, db, owner, "import.vcf", "text/vcard", data)
    return await render(
        request,
        "contacts/import_preview.html",
        {"nav": "contacts", "report": report, "token": token, "filename": upload.filename[:200]},
    )


@login_required
async def import_confirm(request: web.Request) -> web.Response:
    form = await request.post()
    token = str(form.get("jeton", ""))[:100]
    owner, db = _owner(request), request.app[DATABASE]
    upload = await run_sync(load_upload, db, owner, token)
    if upload is None:
        return await _import_page(
            request,
            error="Le fichier à importer n'est plus disponible : choisissez-le de nouveau.",
            status=400,
        )
    if form.get("action") == "annuler":
        await run_sync(delete_uploads, db, owner, [token])
        flash(get_session(request), "info", "Import annulé : rien n'a été enregistré.")
        raise web.HTTPSeeOther("/contacts")
    try:
        report = await run_sync(_book(request).import_vcards, owner, upload.data)
    except VCardImportError as exc:
        return await _import_page(request, error=exc.message, problems=exc.problems, status=400)
    await run_sync(delete_uploads, db, owner, [token])
    log.info("vCard import", extra={"contacts_created": report.created, "contacts_updated": report.updated})
    flash(
        get_session(request),
        "success",
        f"Import terminé : {_plural(report.created, 'contact ajouté', 'contacts ajoutés')}, "
        f"{report.updated} mis à jour, {_plural(report.unchanged, 'inchangé', 'inchangés')}.",
    )
    raise web.HTTPSeeOther("/contacts")


@login_required
async def export(request: web.Request) -> web.Response:
    owner, book = _owner(request), _book(request)
    group_id = request.query.get("groupe")
    filename = "contacts.vcf"
    if group_id is not None:
        try:
            group = await run_sync(book.get_group, owner, group_id[:100])
        except ContactNotFound as exc:
            raise web.HTTPNotFound() from exc
        group_id, filename = group.id, f"groupe {group.name}.vcf"
    data = await run_sync(book.export_vcards, owner, group_id)
    return web.Response(
        body=data,
        headers={
            "Content-Type": "text/vcard; charset=utf-8",
            "Content-Disposition": content_disposition(filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


async def _start(app: web.Application) -> None:
    """Create the contacts' indexes: (owner, name_key) for lists, (owner, emails), the unique (owner,
    uid) that makes imports and « Ajouter à mes contacts » idempotent, and the groups' (owner, name_key)."""
    try:
        await run_sync(ContactBook(app[DATABASE]).ensure_indexes)
    except Exception:  # the pages work without them; the unique uid index is retried at the next start
        log.exception("cannot create the contacts indexes")


def setup(app: web.Application) -> None:
    """Add this module's routes and the creation of the contacts' indexes at start-up."""
    app.on_startup.append(_start)
    app.router.add_get("/annuaire", address_book)
    app.router.add_get("/annuaire/completer", complete)
    app.router.add_post("/annuaire/ajouter", add_from_directory)
    app.router.add_get("/annuaire/fiche/{ident}", contact_card)
    app.router.add_get("/contacts", contacts_page)
    app.router.add_get("/contacts/nouveau", new_contact)
    app.router.add_post("/contacts/nouveau", new_contact)
    app.router.add_get("/contacts/importer", import_page)
    app.router.add_post("/contacts/importer", import_page)
    app.router.add_post("/contacts/importer/confirmer", import_confirm)
    app.router.add_get("/contacts/exporter", export)
    app.router.add_post("/contacts/groupes", create_group)
    app.router.add_get(f"/contacts/groupes/{_ID}", show_group)
    app.router.add_post(f"/contacts/groupes/{_ID}/renommer", rename_group)
    app.router.add_post(f"/contacts/groupes/{_ID}/ajouter", add_to_group)
    app.router.add_post(f"/contacts/groupes/{_ID}/retirer", remove_from_group)
    app.router.add_get(f"/contacts/groupes/{_ID}/supprimer", delete_group)
    app.router.add_post(f"/contacts/groupes/{_ID}/supprimer", delete_group)
    app.router.add_get(f"/contacts/{_ID}", show_contact)
    app.router.add_get(f"/contacts/{_ID}/modifier", edit_contact)
    app.router.add_post(f"/contacts/{_ID}/modifier", edit_contact)
    app.router.add_get(f"/contacts/{_ID}/supprimer", delete_contact)
    app.router.add_post(f"/contacts/{_ID}/supprimer", delete_contact)
    app.router.add_post(f"/contacts/{_ID}/groupe", contact_to_group)
