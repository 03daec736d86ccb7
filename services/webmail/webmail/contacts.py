"""Personal address book: contacts, contact groups usable as recipients, vCard import and export.

The academic directory (every staff member, searched by name, establishment, département, function) is the
directory service's (gRPC); this module holds what each user adds for themselves.

Collections:

- `contacts`: one document per contact — `_id` (random hex), `owner` (account address), `uid` (the vCard
  UID, unique per owner: what makes a second import of the same file change nothing), `name`, `given`,
  `family`, `emails`, `phones`, `organisation`, `title` (function), `notes`, `name_key` (lower-case, no
  accents: sorting and search without `$text`), `search` (the same for name, e-mails and organisation);
- `contact_groups`: `_id`, `owner`, `name`, `name_key`, `contact_ids` (the owner's contacts) and
  `addresses` (raw addresses).

A contact or group named by id is read by `_id` alone and checked against the owner; lists, counts and
searches filter on the owner through the pushdown hint (`common.db.indexed_find`); every write filters
on `{"_id": id, "owner": owner}`: another user's id gives ContactNotFound. Errors carry a
French message for the user.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import vobject
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from common.db import ensure_indexes, indexed_count, indexed_find, utcnow
from webmail.compose import ComposeError, _split_addresses

CONTACTS, GROUPS = "contacts", "contact_groups"

#: Lists and searches are sorted by (name_key, _id) and read through the pushdown hint
#: (`common.db.indexed_find`), along `owner_by_name`.
INDEXES = {
    CONTACTS: [
        IndexModel([("owner", ASCENDING), ("name_key", ASCENDING), ("_id", ASCENDING)], name="owner_by_name"),
        IndexModel([("owner", ASCENDING), ("emails", ASCENDING)], name="owner_email"),
        IndexModel([("owner", ASCENDING), ("uid", ASCENDING)], unique=True, name="owner_uid"),
    ],
    GROUPS: [
        IndexModel([("owner", ASCENDING), ("name_key", ASCENDING), ("_id", ASCENDING)], name="owner_by_name"),
    ],
}

MAX_CONTACTS = 10_000
MAX_GROUPS = 500
MAX_GROUP_MEMBERS = 1000
MAX_EMAILS = 10
MAX_PHONES = 10
MAX_FIELD = 500
MAX_NOTES = 10_000
MAX_GROUP_NAME = 100
MAX_VCF_BYTES = 5 * 1024 * 1024
MAX_CARDS = 5000
MAX_PROBLEMS = 50
VCARD_VERSIONS = ("3.0", "4.0")

_ADDRESS = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
_GROUP_NAME_FORBIDDEN = ',;"<>'
#: A group in a recipient field: « Groupe : Équipe de direction (5) » (the count is optional).
_GROUP_TOKEN = re.compile(r"^\s*groupe\s*:\s*(?P<name>[^@<>\"]+?)\s*(?:\(\d+\))?\s*$", re.I)
_CHANGEABLE = {"name", "given", "family", "emails", "phones", "organisation", "title", "notes"}


class ContactError(Exception):
    """A contact operation cannot be done; the message says why, in French."""

    def __init__(self, message: str, problems: Iterable[str] = ()):
        self.message = message
        self.problems = list(problems)
        super().__init__(message if not self.problems else f"{message} " + " ; ".join(self.problems))


class ContactNotFound(ContactError):
    """No such contact or group in this user's address book (also what another user's id gives)."""

    def __init__(self, message: str = "Contact introuvable dans votre carnet d'adresses."):
        super().__init__(message)


class InvalidContact(ContactError):
    """A contact's or a group's data is wrong."""


class VCardImportError(ContactError):
    """A vCard file cannot be imported; nothing of it was written. `problems` lists what is wrong."""


@dataclass
class ContactInput:
    """What a user fills in for a contact."""

    name: str = ""
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    organisation: str = ""
    title: str = ""
    notes: str = ""
    given: str = ""
    family: str = ""
    uid: str | None = None


@dataclass(frozen=True)
class Contact:
    """A stored personal contact."""

    id: str
    owner: str
    uid: str
    name: str
    given: str
    family: str
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    organisation: str
    title: str
    notes: str


@dataclass(frozen=True)
class Group:
    """A stored contact group: contacts of the owner and raw addresses."""

    id: str
    owner: str
    name: str
    contact_ids: tuple[str, ...]
    addresses: tuple[str, ...]


@dataclass
class ImportReport:
    """What a vCard import did (or, for `preview_vcards`, would do)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Names of the cards created / updated (for the preview shown before importing).
    created_names: list[str] = field(default_factory=list)
    updated_names: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


def fold(text: str) -> str:
    """Lower-case text without accents, for sorting and searching."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().strip()


def normalise_address(value: str) -> str:
    """An e-mail address trimmed and lower-cased (a `mailto:` prefix removed)."""
    value = str(value or "").strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    return value.strip().strip("<>").lower()


def valid_address(value: str) -> bool:
    """True for something that looks like a deliverable e-mail address."""
    return bool(_ADDRESS.match(value)) and len(value) <= 254


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    """The checked fields of a contact; InvalidContact listing every problem."""
    problems = []
    fields: dict[str, Any] = {}
    for key in ("name", "given", "family", "organisation", "title"):
        value = " ".join(str(data.get(key) or "").split())
        if len(value) > MAX_FIELD:
            problems.append(f"champ « {key} » trop long (au plus {MAX_FIELD} caractères)")
        fields[key] = value
    notes = str(data.get("notes") or "").strip()
    if len(notes) > MAX_NOTES:
        problems.append(f"notes trop longues (au plus {MAX_NOTES} caractères)")
    fields["notes"] = notes
    emails = []
    for raw in data.get("emails") or []:
        address = normalise_address(raw)
        if not address:
            continue
        if not valid_address(address):
            problems.append(f"adresse électronique invalide : « {str(raw)[:100]} »")
        elif address not in emails:
            emails.append(address)
    if len(emails) > MAX_EMAILS:
        problems.append(f"trop d'adresses électroniques (au plus {MAX_EMAILS})")
    phones = [" ".join(str(p).split()) for p in data.get("phones") or [] if str(p).strip()]
    if len(phones) > MAX_PHONES:
        problems.append(f"trop de numéros de téléphone (au plus {MAX_PHONES})")
    if any(
        len(p) > 50 or not re.fullmatch(r"[0-9+().\-/ ]+(?:\s*(?:x|ext\.?|poste)\s*\d+)?", p) for p in phones
    ):
        problems.append("numéro de téléphone invalide")
    fields["emails"], fields["phones"] = emails, phones
    if not fields["name"]:
        fields["name"] = " ".join(p for p in (fields["given"], fields["family"]) if p) or (
            emails[0] if emails else fields["organisation"]
        )
    if not fields["name"]:
        problems.append("un contact doit avoir au moins un nom, une adresse ou un organisme")
    if problems:
        raise InvalidContact("Contact invalide :", problems)
    fields["name_key"] = fold(fields["name"])
    fields["search"] = " ".join(
        fold(v) for v in (fields["name"], fields["organisation"], fields["title"], *emails) if v
    )
    return fields


def _to_contact(doc: Mapping[str, Any]) -> Contact:
    return Contact(
        id=doc["_id"],
        owner=doc["owner"],
        uid=doc["uid"],
        name=doc.get("name", ""),
        given=doc.get("given", ""),
        family=doc.get("family", ""),
        emails=tuple(doc.get("emails", [])),
        phones=tuple(doc.get("phones", [])),
        organisation=doc.get("organisation", ""),
        title=doc.get("title", ""),
        notes=doc.get("notes", ""),
    )


def _to_group(doc: Mapping[str, Any]) -> Group:
    return Group(
        id=doc["_id"],
        owner=doc["owner"],
        name=doc.get("name", ""),
        contact_ids=tuple(doc.get("contact_ids", [])),
        addresses=tuple(doc.get("addresses", [])),
    )


class ContactBook:
    """Users' personal contacts and groups. Every method takes the owner (an account address)."""

    def __init__(self, db: Database):
        self.db = db
        self.contacts = db[CONTACTS]
        self.groups = db[GROUPS]

    def ensure_indexes(self) -> None:
        """Create the collections' indexes (idempotent)."""
        ensure_indexes(self.db, INDEXES)

    # --- contacts --------------------------------------------------------------------------------

    def _load(self, collection, owner: str, item_id: str, not_found: str) -> dict[str, Any]:
        if not isinstance(item_id, str) or not item_id:
            raise ContactNotFound(not_found)
        doc = collection.find_one({"_id": item_id})
        if doc is None or doc.get("owner") != normalise_address(owner):
            raise ContactNotFound(not_found)
        return doc

    def _load_contact(self, owner: str, contact_id: str) -> dict[str, Any]:
        return self._load(
            self.contacts, owner, contact_id, "Contact introuvable dans votre carnet d'adresses."
        )

    def _load_group(self, owner: str, group_id: str) -> dict[str, Any]:
        return self._load(self.groups, owner, group_id, "Groupe de contacts introuvable.")

    def count(self, owner: str) -> int:
        """How many contacts `owner` has."""
        return indexed_count(self.contacts, {"owner": normalise_address(owner)})

    def _insert(self, owner: str, fields: dict[str, Any], uid: str | None) -> dict[str, Any]:
        now = utcnow()
        doc_id = uuid.uuid4().hex
        doc = {
            "_id": doc_id,
            "owner": normalise_address(owner),
            "uid": (uid or f"{uuid.uuid4()}@webmail")[:500],
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        try:
            self.contacts.insert_one(doc)
        except DuplicateKeyError as exc:
            raise InvalidContact("Un contact portant le même identifiant (UID) existe déjà.") from exc
        return doc

    def create(self, owner: str, data: ContactInput) -> Contact:
        """Add a contact to `owner`'s address book."""
        fields = _clean(data.__dict__)
        if self.count(owner) >= MAX_CONTACTS:
            raise InvalidContact(f"Votre carnet d'adresses est plein ({MAX_CONTACTS} contacts au plus).")
        return _to_contact(self._insert(owner, fields, data.uid))

    def get(self, owner: str, contact_id: str) -> Contact:
        """One contact of `owner`."""
        return _to_contact(self._load_contact(owner, contact_id))

    def update(self, owner: str, contact_id: str, changes: Mapping[str, Any]) -> Contact:
        """Change some fields of a contact (keys: name, given, family, emails, phones, organisation,
        title, notes)."""
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise InvalidContact(f"Champ non modifiable : {', '.join(sorted(unknown))}.")
        doc = self._load_contact(owner, contact_id)
        merged = {k: doc.get(k) for k in _CHANGEABLE}
        merged.update(changes)
        if "name" not in changes and ({"given", "family"} & set(changes)):
            merged["name"] = ""
        fields = _clean(merged)
        result = self.contacts.update_one(
            {"_id": doc["_id"], "owner": doc["owner"]}, {"$set": {**fields, "updated_at": utcnow()}}
        )
        if result.matched_count != 1:
            raise ContactNotFound()
        return self.get(owner, contact_id)

    def delete(self, owner: str, contact_id: str) -> None:
        """Delete a contact; it leaves the groups it was in."""
        doc = self._load_contact(owner, contact_id)
        self.contacts.delete_one({"_id": doc["_id"], "owner": doc["owner"]})
        for group in self.groups.find({"owner": doc["owner"], "contact_ids": doc["_id"]}):
            self.groups.update_one(
                {"_id": group["_id"], "owner": doc["owner"]}, {"$pull": {"contact_ids": doc["_id"]}}
            )

    def list(self, owner: str, limit: int = 1000, skip: int = 0) -> list[Contact]:
        """`owner`'s contacts sorted by name."""
        cursor = indexed_find(
            self.contacts,
            {"owner": normalise_address(owner)},
            sort=[("name_key", ASCENDING), ("_id", ASCENDING)],
            skip=max(skip, 0),
            limit=min(max(limit, 1), MAX_CONTACTS),
        )
        return [_to_contact(d) for d in cursor]

    def _search_query(self, owner: str, text: str) -> dict[str, Any]:
        words = fold(text).split()[:5]
        query: dict[str, Any] = {"owner": normalise_address(owner)}
        if words:
            query["$and"] = [{"search": {"$regex": re.escape(w)}} for w in words]
        return query

    def search(self, owner: str, text: str, limit: int = 50, skip: int = 0) -> list[Contact]:
        """Contacts whose name, organisation, function or e-mail contains every word of `text`."""
        cursor = indexed_find(
            self.contacts,
            self._search_query(owner, text),
            sort=[("name_key", ASCENDING), ("_id", ASCENDING)],
            skip=max(skip, 0),
            limit=min(max(limit, 1), 500),
        )
        return [_to_contact(d) for d in cursor]

    def count_matching(self, owner: str, text: str) -> int:
        """How many contacts `search(owner, text)` would find without a limit."""
        return indexed_count(self.contacts, self._search_query(owner, text))

    def find_uid(self, owner: str, uid: str) -> Contact | None:
        """The contact of `owner` with this vCard UID (e.g. `annuaire-<account id>`), or None."""
        found = list(indexed_find(self.contacts, {"owner": normalise_address(owner), "uid": uid}, limit=1))
        return _to_contact(found[0]) if found else None

    def get_many(self, owner: str, contact_ids: Iterable[str]) -> list[Contact]:
        """The contacts of `owner` among `contact_ids`, sorted by name (others' and missing ids skipped).

        One `$in` query on `_id` rather than one read per id."""
        ids = [i for i in dict.fromkeys(contact_ids) if isinstance(i, str) and i]
        if not ids:
            return []
        owner = normalise_address(owner)
        docs = [d for d in indexed_find(self.contacts, {"_id": {"$in": ids}}) if d.get("owner") == owner]
        docs.sort(key=lambda d: (d.get("name_key", ""), d["_id"]))
        return [_to_contact(d) for d in docs]

    # --- groups ----------------------------------------------------------------------------------

    def _members(self, owner: str, members: Iterable[str]) -> tuple[list[str], list[str]]:
        contact_ids, addresses, problems = [], [], []
        for member in members:
            member = str(member or "").strip()
            if not member:
                continue
            if "@" in member:
                address = normalise_address(member)
                if not valid_address(address):
                    problems.append(f"adresse invalide : « {member[:100]} »")
                elif address not in addresses:
                    addresses.append(address)
            else:
                try:
                    self._load_contact(owner, member)
                except ContactNotFound:
                    problems.append(f"contact inconnu : « {member[:40]} »")
                    continue
                if member not in contact_ids:
                    contact_ids.append(member)
        if len(contact_ids) + len(addresses) > MAX_GROUP_MEMBERS:
            problems.append(f"trop de membres (au plus {MAX_GROUP_MEMBERS})")
        if problems:
            raise InvalidContact("Groupe invalide :", problems)
        return contact_ids, addresses

    def _group_name(self, owner: str, name: str, exclude: str = "") -> str:
        """A group's name, checked: not empty, not too long, without `,` `;` `"` `<` `>` (a group is
        written « Groupe : nom (n) » in a recipient field, where those separate addresses), and unlike
        the owner's other groups (accents and case ignored), so that the name designates one group."""
        name = " ".join(str(name or "").split())
        if not name:
            raise InvalidContact("Un groupe doit avoir un nom.")
        if len(name) > MAX_GROUP_NAME:
            raise InvalidContact(f"Nom de groupe trop long (au plus {MAX_GROUP_NAME} caractères).")
        if any(c in name for c in _GROUP_NAME_FORBIDDEN):
            raise InvalidContact(
                "Le nom d'un groupe ne peut contenir ni virgule, ni point-virgule, ni guillemets droits, "
                "ni chevrons (< >)."
            )
        key = fold(name)
        for other in indexed_find(self.groups, {"owner": normalise_address(owner)}, {"name_key": 1}):
            if other.get("name_key") == key and other["_id"] != exclude:
                raise InvalidContact(f"Vous avez déjà un groupe nommé « {name} ».")
        return name

    def create_group(self, owner: str, name: str, members: Iterable[str] = ()) -> Group:
        """A new group; `members` are ids of `owner`'s contacts or raw addresses."""
        owner = normalise_address(owner)
        name = self._group_name(owner, name)
        if indexed_count(self.groups, {"owner": owner}) >= MAX_GROUPS:
            raise InvalidContact(f"Vous avez déjà {MAX_GROUPS} groupes, le maximum.")
        contact_ids, addresses = self._members(owner, members)
        now = utcnow()
        doc = {
            "_id": uuid.uuid4().hex,
            "owner": owner,
            "name": name,
            "name_key": fold(name),
            "contact_ids": contact_ids,
            "addresses": addresses,
            "created_at": now,
            "updated_at": now,
        }
        self.groups.insert_one(doc)
        return _to_group(doc)

    def get_group(self, owner: str, group_id: str) -> Group:
        """One group of `owner`."""
        return _to_group(self._load_group(owner, group_id))

    def update_group(
        self, owner: str, group_id: str, name: str | None = None, members: Iterable[str] | None = None
    ) -> Group:
        """Rename a group and/or replace its members."""
        doc = self._load_group(owner, group_id)
        changes: dict[str, Any] = {"updated_at": utcnow()}
        if name is not None:
            changes["name"] = self._group_name(owner, name, exclude=doc["_id"])
            changes["name_key"] = fold(changes["name"])
        if members is not None:
            changes["contact_ids"], changes["addresses"] = self._members(owner, members)
        self.groups.update_one({"_id": doc["_id"], "owner": doc["owner"]}, {"$set": changes})
        return self.get_group(owner, group_id)

    def delete_group(self, owner: str, group_id: str) -> None:
        """Delete a group (its contacts stay)."""
        doc = self._load_group(owner, group_id)
        self.groups.delete_one({"_id": doc["_id"], "owner": doc["owner"]})

    def list_groups(self, owner: str) -> list[Group]:
        """`owner`'s groups sorted by name."""
        by_name = [("name_key", ASCENDING), ("_id", ASCENDING)]
        cursor = indexed_find(self.groups, {"owner": normalise_address(owner)}, sort=by_name)
        return [_to_group(d) for d in cursor]

    def find_group(self, owner: str, name: str) -> Group:
        """`owner`'s group of that name (accents and case ignored); ContactNotFound if none."""
        key = fold(" ".join(str(name or "").split()))
        for doc in indexed_find(self.groups, {"owner": normalise_address(owner)}):
            if doc.get("name_key") == key:
                return _to_group(doc)
        raise ContactNotFound(f"Groupe de contacts introuvable : « {str(name)[:100]} ».")

    def add_members(self, owner: str, group_id: str, members: Iterable[str]) -> Group:
        """Add contacts (ids) or raw addresses to a group (already there: no change)."""
        group = self.get_group(owner, group_id)
        return self.update_group(owner, group_id, members=[*group.contact_ids, *group.addresses, *members])

    def remove_members(self, owner: str, group_id: str, members: Iterable[str]) -> Group:
        """Take contacts (ids) or raw addresses out of a group (the contacts themselves stay)."""
        group = self.get_group(owner, group_id)
        gone = {normalise_address(m) if "@" in m else m for m in members}
        kept = [m for m in (*group.contact_ids, *group.addresses) if m not in gone]
        return self.update_group(owner, group_id, members=kept)

    def group_members(self, owner: str, group_id: str) -> list[tuple[str, str]]:
        """(name, address) of each recipient of a group: each member contact's first address with its
        name, then the raw addresses (no name), without duplicate addresses. Contacts deleted since, or
        without an address, are skipped."""
        doc = self._load_group(owner, group_id)
        members: dict[str, str] = {}
        by_id = {c.id: c for c in self.get_many(owner, doc.get("contact_ids", []))}
        for contact_id in doc.get("contact_ids", []):
            contact = by_id.get(contact_id)
            if contact is not None and contact.emails:
                members.setdefault(contact.emails[0], contact.name)
        for address in doc.get("addresses", []):
            members.setdefault(address, "")
        return [(name, address) for address, name in members.items()]

    def group_recipients(self, owner: str, group_id: str) -> list[str]:
        """The addresses a message to the group goes to: each member contact's first address, then the
        raw addresses, without duplicates. Contacts deleted since, or without an address, are skipped."""
        return [address for _, address in self.group_members(owner, group_id)]

    # --- vCard -----------------------------------------------------------------------------------

    def export_vcards(self, owner: str, group_id: str | None = None) -> bytes:
        """Every contact of `owner` (or of one of their groups: its contacts, then its raw addresses as
        cards of their own) as one `.vcf` file (vCard 3.0), UTF-8."""
        if group_id is None:
            contacts = self.list(owner, limit=MAX_CONTACTS)
            extra: list[str] = []
        else:
            group = self.get_group(owner, group_id)
            contacts = self.get_many(owner, group.contact_ids)
            extra = list(group.addresses)
        cards = [to_vcard(contact).serialize() for contact in contacts]
        for address in extra:
            uid = "address-" + hashlib.sha256(address.encode()).hexdigest()[:32]
            card = to_vcard(Contact("", owner, uid, address, "", "", (address,), (), "", "", ""))
            cards.append(card.serialize())
        return "".join(cards).encode("utf-8")

    def preview_vcards(self, owner: str, data: bytes | str) -> ImportReport:
        """What `import_vcards` would do with this file, writing nothing (VCardImportError as it would)."""
        report, _, _ = self._plan_import(owner, data)
        return report

    def _plan_import(
        self, owner: str, data: bytes | str
    ) -> tuple[ImportReport, list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]:
        """(report, documents to insert, (stored document, new fields) to update) for a `.vcf` file."""
        cards = parse_vcards(data)
        owner = normalise_address(owner)
        # One read of the owner's contacts, not one query per card.
        wanted = {uid for uid, _ in cards}
        owned = list(indexed_find(self.contacts, {"owner": owner}))
        existing_uids = {doc["uid"]: doc for doc in owned if doc["uid"] in wanted}
        new = sum(1 for uid, _ in cards if uid not in existing_uids)
        if len(owned) + new > MAX_CONTACTS:
            raise VCardImportError(
                f"Import impossible : votre carnet dépasserait {MAX_CONTACTS} contacts. "
                "Rien n'a été enregistré."
            )
        report = ImportReport()
        fresh: list[dict[str, Any]] = []
        changed: list[tuple[dict[str, Any], dict[str, Any]]] = []
        now = utcnow()
        for uid, fields in cards:
            doc = existing_uids.get(uid)
            if doc is None:
                fresh.append(
                    {
                        "_id": uuid.uuid4().hex,
                        "owner": owner,
                        "uid": uid,
                        "created_at": now,
                        "updated_at": now,
                        **fields,
                    }
                )
                report.created += 1
                report.created_names.append(fields["name"])
            elif all(doc.get(k) == v for k, v in fields.items()):
                report.unchanged += 1
            else:
                changed.append((doc, fields))
                report.updated += 1
                report.updated_names.append(fields["name"])
        return report, fresh, changed

    def import_vcards(self, owner: str, data: bytes | str) -> ImportReport:
        """Import a `.vcf` file: all its cards, or nothing when anything is wrong (VCardImportError).

        Cards are matched on their UID (or, without one, on their name and addresses), so importing the
        same file twice adds nothing.
        """
        report, fresh, changed = self._plan_import(owner, data)
        owner = normalise_address(owner)
        for doc, fields in changed:
            self.contacts.update_one(
                {"_id": doc["_id"], "owner": owner}, {"$set": {**fields, "updated_at": utcnow()}}
            )
        if fresh:  # one round trip for the new contacts
            try:
                self.contacts.insert_many(fresh, ordered=True)
            except BulkWriteError as exc:
                raise VCardImportError(
                    "Un contact du fichier a été ajouté entre-temps : "
                    "relancez l'import, il complétera sans doublon."
                ) from exc
        return report


# --- groups in recipient fields ------------------------------------------------------------------------


def group_token(group: Group) -> str:
    """How a group is written in a To/Cc/Bcc field: « Groupe : Équipe de direction (5) »."""
    return f"Groupe : {group.name} ({len(group.contact_ids) + len(group.addresses)})"


def group_name_of(entry: str) -> str | None:
    """The group named by one entry of a recipient field (« Groupe : nom (n) »), or None for an address."""
    found = _GROUP_TOKEN.match(entry or "")
    return found.group("name") if found else None


def has_group(value: str) -> bool:
    """True when a recipient field holds at least one group (cheap: no database)."""
    return "roupe" in (value or "") and any(
        group_name_of(chunk) for chunk in _split_addresses((value or "").replace(";", ","))
    )


def expand_groups(value: str, label: str, members_of: Callable[[str], list[tuple[str, str]]]) -> str:
    """A recipient field with each group replaced by its members (`Nom <adresse>`), other entries kept
    as typed. `members_of(name)` gives a group's (name, address) pairs or raises ContactNotFound.
    ComposeError (French) for an unknown group or a group without any address."""
    parts: list[str] = []
    for chunk in _split_addresses((value or "").replace(";", ",")):
        name = group_name_of(chunk)
        if name is None:
            if chunk.strip():
                parts.append(chunk.strip())
            continue
        try:
            members = members_of(name)
        except ContactNotFound as exc:
            raise ComposeError(f"{label} : groupe de contacts inconnu « {name} ».") from exc
        if not members:
            raise ComposeError(f"{label} : le groupe « {name} » n'a aucun membre avec une adresse.")
        parts.extend(email.utils.formataddr((n, a)) if n else a for n, a in members)
    return ", ".join(parts)


def expand_recipient_groups(book: ContactBook, owner: str, fields: Mapping[str, str]) -> dict[str, str]:
    """Compose form fields with the groups of À/Cc/Cci (keys a, cc, cci) expanded to their members.
    Only `owner`'s groups are found: another user's group name is unknown here."""
    expanded = dict(fields)
    cache: dict[str, list[tuple[str, str]]] = {}

    def members_of(name: str) -> list[tuple[str, str]]:
        key = fold(name)
        if key not in cache:
            cache[key] = book.group_members(owner, book.find_group(owner, name).id)
        return cache[key]

    for key, label in (("a", "À"), ("cc", "Cc"), ("cci", "Cci")):
        if has_group(expanded.get(key, "")):
            expanded[key] = expand_groups(expanded[key], label, members_of)
    return expanded


# --- vCard ----------------------------------------------------------------------------------------------


def to_vcard(contact: Contact):
    """A contact as a vobject vCard 3.0 component."""
    card = vobject.vCard()
    card.add("fn").value = contact.name
    card.add("n").value = vobject.vcard.Name(family=contact.family, given=contact.given)
    for address in contact.emails:
        line = card.add("email")
        line.value = address
        line.type_param = "INTERNET"
    for phone in contact.phones:
        card.add("tel").value = phone
    if contact.organisation:
        card.add("org").value = [contact.organisation]
    if contact.title:
        card.add("title").value = contact.title
    if contact.notes:
        card.add("note").value = contact.notes
    card.add("uid").value = contact.uid
    return card


def _values(card, name: str) -> list:
    return [line.value for line in card.contents.get(name, [])]


def _first_text(card, name: str) -> str:
    values = _values(card, name)
    if not values:
        return ""
    value = values[0]
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v)
    return str(value)


def parse_vcards(data: bytes | str) -> list[tuple[str, dict[str, Any]]]:
    """The cards of a `.vcf` file as (uid, checked fields); VCardImportError listing every problem."""
    if isinstance(data, bytes):
        if len(data) > MAX_VCF_BYTES:
            raise VCardImportError(
                f"Le fichier est trop volumineux ({len(data) // 1024} Ko) : "
                f"au plus {MAX_VCF_BYTES // 1024 // 1024} Mo."
            )
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VCardImportError(
                "Le fichier n'est pas un carnet vCard lisible (encodage non UTF-8)."
            ) from exc
    if len(data.encode("utf-8")) > MAX_VCF_BYTES:
        raise VCardImportError(
            f"Le fichier est trop volumineux : au plus {MAX_VCF_BYTES // 1024 // 1024} Mo."
        )
    text = data.lstrip("\ufeff \t\r\n")
    if not text:
        raise VCardImportError("Le fichier est vide.")
    if "\x00" in text or not text.upper().startswith("BEGIN:VCARD"):
        raise VCardImportError("Le fichier n'est pas un carnet vCard (il doit commencer par BEGIN:VCARD).")
    if text.upper().count("BEGIN:VCARD") > MAX_CARDS:
        raise VCardImportError(f"Le fichier contient trop de contacts : au plus {MAX_CARDS}.")
    try:
        components = list(vobject.readComponents(text, ignoreUnreadable=False))
    except Exception as exc:
        where = str(exc).split(":", 1)[0] if str(exc).startswith("At line") else ""
        detail = f" ({where.replace('At line', 'ligne')})" if where else ""
        raise VCardImportError(
            f"Le fichier vCard est mal formé ou tronqué{detail} : rien n'a été enregistré."
        ) from exc
    problems: list[str] = []
    cards: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for index, card in enumerate(components, start=1):
        label = f"contact n° {index}"
        if card.name != "VCARD":
            problems.append(f"{label} : composant inattendu ({card.name})")
            continue
        version = _first_text(card, "version").strip()
        if version not in VCARD_VERSIONS:
            problems.append(
                f"{label} : version vCard non prise en charge ({version or 'absente'}) : 3.0 ou 4.0 attendue"
            )
            continue
        name = _first_text(card, "fn").strip()
        label = f"{label} (« {name[:60]} »)" if name else label
        family = given = ""
        names = _values(card, "n")
        if names and hasattr(names[0], "family"):
            family = " ".join(names[0].family) if isinstance(names[0].family, list) else str(names[0].family)
            given = " ".join(names[0].given) if isinstance(names[0].given, list) else str(names[0].given)
        raw = {
            "name": name,
            "given": given,
            "family": family,
            "emails": [str(v) for v in _values(card, "email")],
            "phones": [str(v) for v in _values(card, "tel")],
            "organisation": _first_text(card, "org"),
            "title": _first_text(card, "title"),
            "notes": _first_text(card, "note"),
        }
        try:
            fields = _clean(raw)
        except InvalidContact as exc:
            problems.extend(f"{label} : {p}" for p in exc.problems)
            continue
        uid = _first_text(card, "uid").strip()
        if not uid:
            basis = "\0".join([fields["name_key"], *sorted(fields["emails"])])
            uid = "vcard-" + hashlib.sha256(basis.encode()).hexdigest()[:32]
        uid = uid[:500]
        if uid in seen:
            continue  # the same card twice in one file: the first one counts
        seen.add(uid)
        cards.append((uid, fields))
    if not components:
        problems.append("aucun contact dans le fichier")
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"… et {len(problems) - MAX_PROBLEMS} autres problèmes")
        raise VCardImportError("Le fichier n'a pas été importé, rien n'a été enregistré :", shown)
    return cards
