"""Data access to one user's mailbox: folders, listing, search, flags, moves, deletion.

`Mailbox(db, address)` is the only way the webmail touches `mailbox_entries`, and every operation is
confined to the mailbox it was built for:

- listing, counting and searching filter on `{"mailbox": address, ...}`;
- an entry named by id (from a URL or a form) is read by its `_id` and refused — treated exactly like a
  missing entry — unless its `mailbox` is this one. The read is by `_id` alone because FerretDB v1 pushes
  only a lone `_id` filter down to SQLite (`{"_id", "mailbox"}` scans the whole collection, about ten
  times slower); the ownership check is then done here, on the document. An entry's `mailbox` never
  changes, so a write that follows the check by `_id` cannot reach another mailbox's entry. Write
  filters still carry `mailbox` where they are not by `_id` (MongoDB serves them with its indexes).

Folders: the system folders (`common.mailstore.SYSTEM_FOLDERS`) and the user's own, kept in the
`mailboxes` document of the address (`folders: [{"id": "u-<hex>", "name": "..."}]`, one `_id` read).
An entry's `folder` is a system folder name or an own folder's id, so renaming a folder touches no entry.

Deleting moves to Trash (remembering the folder in `trashed_from`, for "Restaurer"); deleting from Trash
removes the entry for good and lowers the mailbox's usage counter (`mailboxes.used_bytes`, raised by
delivery in `common.mailstore.add_usage`). The raw message stays in the blob store: other recipients
may share it.

An entry with a `virus` field (filed in Quarantine by delivery) can only go to Trash or back to
Quarantine, whatever folder it is asked to move to: it must never reach a folder where it would look like
ordinary mail.

Search: `search_text` (folded words of subject, sender, attachment names and the first part of the body,
written by `common.mailstore.summarize`) plus the subject, sender and snippet, matched with
accent-insensitive regular expressions; no `$text` (FerretDB has none).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

from common import mailstore
from common.db import BlobStore, utcnow
from common.mailstore import DRAFTS, INBOX, JUNK, QUARANTINE, SENT, SYSTEM_FOLDERS, TRASH

#: French labels of the system folders, in display order.
FOLDER_LABELS = {
    INBOX: "Boîte de réception",
    SENT: "Envoyés",
    DRAFTS: "Brouillons",
    JUNK: "Indésirables",
    QUARANTINE: "Quarantaine",
    TRASH: "Corbeille",
}
#: DSFR icon of each system folder in the side menu.
FOLDER_ICONS = {
    INBOX: "fr-icon-inbox-line",
    SENT: "fr-icon-send-plane-line",
    DRAFTS: "fr-icon-draft-line",
    JUNK: "fr-icon-mail-forbid-line",
    QUARANTINE: "fr-icon-virus-line",
    TRASH: "fr-icon-delete-line",
}

#: Sort keys of the list (query parameter `tri`) and the entry field each sorts on.
SORTS = {"date": "received_at", "expediteur": "from.address", "objet": "subject", "taille": "size"}
DEFAULT_SORT = "date"

#: The fields a list row needs: never the raw message, the recipients list or the search text.
LIST_FIELDS = {
    "_id": 1,
    "folder": 1,
    "from": 1,
    "subject": 1,
    "snippet": 1,
    "date": 1,
    "received_at": 1,
    "size": 1,
    "has_attachments": 1,
    "flags": 1,
    "virus": 1,
    "spam.verdict": 1,
}
#: Recipients are shown instead of the sender in these folders.
RECIPIENT_FOLDERS = (SENT, DRAFTS)

MAX_FOLDER_NAME = 60
MAX_OWN_FOLDERS = 200
#: Ids accepted by one action (a page of checkboxes is WEBMAIL_PAGE_SIZE long).
MAX_IDS = 500

INDEXES = {
    "mailbox_entries": [
        *mailstore.INDEXES["mailbox_entries"],
        # sorts of a folder's list other than by date (folder_listing serves the date)
        IndexModel(
            [("mailbox", ASCENDING), ("folder", ASCENDING), ("from.address", ASCENDING)], name="by_sender"
        ),
        IndexModel(
            [("mailbox", ASCENDING), ("folder", ASCENDING), ("subject", ASCENDING)], name="by_subject"
        ),
        IndexModel([("mailbox", ASCENDING), ("folder", ASCENDING), ("size", ASCENDING)], name="by_size"),
        # search across every folder, newest first, and the date range of a search
        IndexModel([("mailbox", ASCENDING), ("received_at", DESCENDING)], name="mailbox_recent"),
    ],
}


class FolderError(ValueError):
    """A folder operation refused, with a French message for the user."""


@dataclass(frozen=True)
class Folder:
    """A folder of the side menu."""

    id: str
    label: str
    unread: int
    total: int
    system: bool
    icon: str = "fr-icon-folder-2-line"

    # (name, label_fr, unread, total), as tuples for callers that unpack them
    def __iter__(self):
        return iter((self.id, self.label, self.unread, self.total))


def folded_pattern(text: str) -> str:
    """A regular expression matching `text` whatever the case and accents of the stored value.

    The query is folded (lower case, no accents) and each letter becomes a class of its accented forms,
    so "reunion" and "Réunion" both match "Réunion" in a subject that was not folded.
    """
    out = []
    for char in mailstore.fold(text) if text.strip() else "":
        out.append(_ACCENT_CLASSES.get(char, re.escape(char)))
    return "".join(out)


_ACCENTS = {
    "a": "aàâäáãåæ",
    "c": "cç",
    "e": "eéèêë",
    "i": "iîïíì",
    "n": "nñ",
    "o": "oôöóòõœ",
    "u": "uùûüú",
    "y": "yÿý",
}
_ACCENT_CLASSES = {k: "[" + v + v.upper() + k.upper() + "]" for k, v in _ACCENTS.items()}
_ACCENT_CLASSES.update({k: f"[{k}{k.upper()}]" for k in "bdfghjklmpqrstvwxz"})


class Mailbox:
    """One user's mailbox; every method is confined to `address`."""

    def __init__(self, db: Database, address: str):
        if not address:
            raise ValueError("a mailbox needs an address")
        self.db = db
        self.address = address.strip().lower()
        self.entries = db.mailbox_entries

    # --- single entries ---------------------------------------------------------------------------------

    def entry(self, entry_id: str) -> dict[str, Any] | None:
        """The whole entry `entry_id` if it belongs to this mailbox, else None."""
        if not isinstance(entry_id, str) or not entry_id or len(entry_id) > 100:
            return None
        doc = self.entries.find_one({"_id": entry_id})
        if doc is None or doc.get("mailbox") != self.address:
            return None
        return doc

    def raw(self, entry: dict[str, Any]) -> bytes:
        """The raw message of an entry of this mailbox (raises BlobNotFound if it is gone)."""
        if entry.get("mailbox") != self.address:
            raise PermissionError("entry of another mailbox")
        return BlobStore(self.db).get(entry["message_id"])

    def _owned(self, ids) -> list[dict[str, Any]]:
        """The entries among `ids` that belong to this mailbox (others are silently ignored)."""
        found, seen = [], set()
        for entry_id in list(ids)[:MAX_IDS]:
            if entry_id in seen:
                continue
            seen.add(entry_id)
            doc = self.entries.find_one(
                {"_id": entry_id},
                {
                    "mailbox": 1,
                    "folder": 1,
                    "size": 1,
                    "virus": 1,
                    "message_id": 1,
                    "from": 1,
                    "trashed_from": 1,
                    "envelope_from": 1,
                },
            )
            if doc is not None and doc.get("mailbox") == self.address:
                found.append(doc)
        return found

    # --- folders ----------------------------------------------------------------------------------------

    def own_folders(self) -> list[dict[str, str]]:
        """The user's own folders, sorted by name: [{"id", "name"}]."""
        doc = self.db.mailboxes.find_one({"_id": self.address}, {"folders": 1}) or {}
        return sorted(doc.get("folders", []), key=lambda f: mailstore.fold(f["name"]))

    def folder_exists(self, folder: str) -> bool:
        return folder in SYSTEM_FOLDERS or any(f["id"] == folder for f in self.own_folders())

    def folder_label(self, folder: str) -> str | None:
        if folder in FOLDER_LABELS:
            return FOLDER_LABELS[folder]
        for own in self.own_folders():
            if own["id"] == folder:
                return own["name"]
        return None

    def counts(self) -> dict[str, tuple[int, int]]:
        """{folder: (unread, total)} in one aggregation over the mailbox (not two counts per folder).

        Grouped by (folder, seen): `$group` with `$sum` is what FerretDB supports, and on FerretDB each
        query over the mailbox is a scan of the collection, so one query instead of twelve matters.
        """
        counts: dict[str, list[int]] = {}
        for row in self.entries.aggregate(
            [
                {"$match": {"mailbox": self.address}},
                {"$group": {"_id": {"folder": "$folder", "seen": "$flags.seen"}, "n": {"$sum": 1}}},
            ]
        ):
            key = row["_id"] or {}
            unread_total = counts.setdefault(key.get("folder"), [0, 0])
            unread_total[1] += row["n"]
            if key.get("seen") is False:
                unread_total[0] += row["n"]
        return {folder: (unread, total) for folder, (unread, total) in counts.items()}

    def folders(self) -> list[Folder]:
        """System folders then the user's own, each with its unread and total counts."""
        counts = self.counts()
        result = [
            Folder(name, label, *counts.get(name, (0, 0)), system=True, icon=FOLDER_ICONS[name])
            for name, label in FOLDER_LABELS.items()
        ]
        for own in self.own_folders():
            result.append(Folder(own["id"], own["name"], *counts.get(own["id"], (0, 0)), system=False))
        return result

    def create_folder(self, name: str) -> str:
        """Create an own folder; returns its id. Raises FolderError with a French reason."""
        name = self._check_name(name)
        folders = self.own_folders()
        if len(folders) >= MAX_OWN_FOLDERS:
            raise FolderError(f"Vous avez déjà {MAX_OWN_FOLDERS} dossiers : supprimez-en avant d'en créer.")
        self._check_unique(name, folders)
        folder_id = "u-" + secrets.token_hex(6)
        self.db.mailboxes.update_one(
            {"_id": self.address}, {"$push": {"folders": {"id": folder_id, "name": name}}}, upsert=True
        )
        return folder_id

    def rename_folder(self, folder_id: str, name: str) -> None:
        name = self._check_name(name)
        folders = self.own_folders()
        if not any(f["id"] == folder_id for f in folders):
            raise FolderError("Ce dossier n'existe pas.")
        self._check_unique(name, [f for f in folders if f["id"] != folder_id])
        # The whole list is rewritten: FerretDB v1 has no positional `$` update. Renaming is rare and
        # done by the owner only, so a concurrent change of the same list is not a practical concern.
        doc = self.db.mailboxes.find_one({"_id": self.address}, {"folders": 1}) or {}
        renamed = [{**f, "name": name} if f["id"] == folder_id else f for f in doc.get("folders", [])]
        self.db.mailboxes.update_one({"_id": self.address}, {"$set": {"folders": renamed}})

    def delete_folder(self, folder_id: str) -> int:
        """Delete an own folder; its messages go to Trash. Returns how many were moved."""
        if not any(f["id"] == folder_id for f in self.own_folders()):
            raise FolderError("Ce dossier n'existe pas.")
        moved = self.entries.update_many(
            {"mailbox": self.address, "folder": folder_id},
            {"$set": {"folder": TRASH, "trashed_from": INBOX, "trashed_at": utcnow()}},
        ).modified_count
        # Rewritten whole: FerretDB v1's `$pull` takes no condition on array elements.
        doc = self.db.mailboxes.find_one({"_id": self.address}, {"folders": 1}) or {}
        kept = [f for f in doc.get("folders", []) if f["id"] != folder_id]
        self.db.mailboxes.update_one({"_id": self.address}, {"$set": {"folders": kept}})
        return moved

    @staticmethod
    def _check_name(name: str) -> str:
        name = " ".join((name or "").split())
        if not name:
            raise FolderError("Donnez un nom au dossier.")
        if len(name) > MAX_FOLDER_NAME:
            raise FolderError(f"Le nom d'un dossier ne dépasse pas {MAX_FOLDER_NAME} caractères.")
        if any(ord(c) < 32 for c in name):
            raise FolderError("Ce nom contient des caractères non permis.")
        return name

    @staticmethod
    def _check_unique(name: str, folders: list[dict[str, str]]) -> None:
        folded = mailstore.fold(name)
        taken = {mailstore.fold(label) for label in FOLDER_LABELS.values()} | {
            mailstore.fold(f["name"]) for f in folders
        }
        if folded in taken:
            raise FolderError(f"Un dossier « {name} » existe déjà.")

    # --- listing and search -------------------------------------------------------------------------

    def page(
        self,
        folder: str,
        page: int = 1,
        sort: str = DEFAULT_SORT,
        order: str = "desc",
        page_size: int = 50,
        total: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of a folder's list (list fields only) and the folder's total.

        `total`, when the caller already knows it (from `folders()`), saves a count query.
        """
        query = {"mailbox": self.address, "folder": folder}
        recipients = folder in RECIPIENT_FOLDERS
        return self._paged(query, page, sort, order, page_size, with_recipients=recipients, total=total)

    def search(
        self,
        text: str = "",
        sender: str = "",
        subject: str = "",
        since: dt.date | dt.datetime | None = None,
        until: dt.date | dt.datetime | None = None,
        folder: str = "",
        page: int = 1,
        page_size: int = 50,
        sort: str = DEFAULT_SORT,
        order: str = "desc",
    ) -> tuple[list[dict[str, Any]], int]:
        """Entries matching every criterion given (words of `text` all present), newest first."""
        clauses: list[dict[str, Any]] = [{"mailbox": self.address}]
        if folder:
            clauses.append({"folder": folder})
        for word in mailstore.fold(text).split()[:10]:
            pattern = folded_pattern(word)
            clauses.append(
                {
                    "$or": [
                        {"search_text": {"$regex": re.escape(word)}},
                        {"subject": {"$regex": pattern}},
                        {"from.name": {"$regex": pattern}},
                        {"from.address": {"$regex": re.escape(word)}},
                        {"snippet": {"$regex": pattern}},
                    ]
                }
            )
        if sender.strip():
            pattern = folded_pattern(sender)
            clauses.append(
                {"$or": [{"from.name": {"$regex": pattern}}, {"from.address": {"$regex": pattern}}]}
            )
        if subject.strip():
            clauses.append({"subject": {"$regex": folded_pattern(subject)}})
        window: dict[str, dt.datetime] = {}
        if since is not None:
            window["$gte"] = _start_of(since)
        if until is not None:
            window["$lt"] = _start_of(until) + (
                dt.timedelta(days=1) if not isinstance(until, dt.datetime) else dt.timedelta(0)
            )
        if window:
            clauses.append({"received_at": window})
        query = clauses[0] if len(clauses) == 1 else {"$and": clauses}
        return self._paged(query, page, sort, order, page_size, with_recipients=True)

    def _paged(self, query, page, sort, order, page_size, with_recipients, total=None):
        page_size = max(1, min(int(page_size), 200))
        page = max(1, int(page))
        field = SORTS.get(sort, SORTS[DEFAULT_SORT])
        direction = ASCENDING if order == "asc" else DESCENDING
        projection = dict(LIST_FIELDS)
        if with_recipients:
            projection["to"] = 1
        if total is None:
            total = self.entries.count_documents(query)
        cursor = (
            self.entries.find(query, projection)
            .sort([(field, direction), ("_id", direction)])
            .skip((page - 1) * page_size)
            .limit(page_size)
        )
        return list(cursor), total

    def unread_count(self, folder: str = INBOX) -> int:
        return self.entries.count_documents({"mailbox": self.address, "folder": folder, "flags.seen": False})

    # --- changes ---------------------------------------------------------------------------------------

    def set_flags(
        self, ids, *, seen: bool | None = None, flagged: bool | None = None, answered: bool | None = None
    ) -> int:
        """Set flags on the entries of this mailbox among `ids`; returns how many were found."""
        changes = {
            f"flags.{name}": value
            for name, value in (("seen", seen), ("flagged", flagged), ("answered", answered))
            if value is not None
        }
        owned = self._owned(ids)
        if changes:
            for doc in owned:
                self.entries.update_one({"_id": doc["_id"]}, {"$set": changes})
        return len(owned)

    def mark_read(self, entry: dict[str, Any]) -> None:
        """Mark an entry (already checked to be ours) read, if it is not."""
        if entry.get("mailbox") == self.address and not entry.get("flags", {}).get("seen"):
            self.entries.update_one({"_id": entry["_id"]}, {"$set": {"flags.seen": True}})
            entry.setdefault("flags", {})["seen"] = True

    def move(self, ids, folder: str) -> int:
        """Move entries to `folder` (a system folder or an own folder); returns how many moved."""
        if not self.folder_exists(folder):
            raise FolderError("Ce dossier n'existe pas.")
        moved = 0
        for doc in self._owned(ids):
            target = folder
            if doc.get("virus") and folder not in (TRASH, QUARANTINE):
                continue  # an infected message never leaves Quarantine/Trash
            if doc.get("folder") == target:
                continue
            changes: dict[str, Any] = {"$set": {"folder": target}}
            if target == TRASH:
                changes["$set"].update({"trashed_from": doc.get("folder", INBOX), "trashed_at": utcnow()})
            else:
                changes["$unset"] = {"trashed_from": "", "trashed_at": ""}
            self.entries.update_one({"_id": doc["_id"]}, changes)
            moved += 1
        return moved

    def delete(self, ids) -> tuple[int, int]:
        """Move to Trash; entries already in Trash are deleted for good.

        Returns (moved to Trash, deleted for good). Deleting for good lowers `mailboxes.used_bytes`.
        """
        owned = self._owned(ids)
        to_trash = [d["_id"] for d in owned if d.get("folder") != TRASH]
        moved = self.move(to_trash, TRASH) if to_trash else 0
        freed, gone = 0, 0
        for doc in owned:
            if doc.get("folder") != TRASH:
                continue
            if self.entries.delete_one({"_id": doc["_id"]}).deleted_count:
                gone += 1
                freed += int(doc.get("size", 0))
        if freed:
            self.db.mailboxes.update_one({"_id": self.address}, {"$inc": {"used_bytes": -freed}}, upsert=True)
        return moved, gone

    def empty_trash(self) -> int:
        """Delete every entry of Trash for good; returns how many."""
        ids = [d["_id"] for d in self.entries.find({"mailbox": self.address, "folder": TRASH}, {"_id": 1})]
        total = 0
        for start in range(0, len(ids), MAX_IDS):
            total += self.delete(ids[start : start + MAX_IDS])[1]
        return total

    def restore(self, ids) -> int:
        """Put entries of Trash back in the folder they were deleted from (INBOX if it is gone)."""
        own = {f["id"] for f in self.own_folders()}
        restored = 0
        for doc in self._owned(ids):
            if doc.get("folder") != TRASH:
                continue
            target = doc.get("trashed_from") or INBOX
            if doc.get("virus"):
                target = QUARANTINE
            elif (target not in SYSTEM_FOLDERS and target not in own) or target == TRASH:
                target = INBOX
            self.entries.update_one(
                {"_id": doc["_id"]},
                {"$set": {"folder": target}, "$unset": {"trashed_from": "", "trashed_at": ""}},
            )
            restored += 1
        return restored

    def report(self, ids, label: str) -> list[dict[str, str]]:
        """Move entries to Junk (`label` "spam") or INBOX ("ham"); returns what the spam feedback needs.

        Each item: {"entry_id", "message_id", "sender"}. Quarantined (infected) entries are left alone.
        """
        if label not in ("spam", "ham"):
            raise ValueError(label)
        target = JUNK if label == "spam" else INBOX
        reported = []
        for doc in self._owned(ids):
            if doc.get("virus"):
                continue
            if doc.get("folder") != target:
                self.entries.update_one(
                    {"_id": doc["_id"]},
                    {"$set": {"folder": target}, "$unset": {"trashed_from": "", "trashed_at": ""}},
                )
            sender = (doc.get("from") or {}).get("address") or doc.get("envelope_from") or ""
            reported.append({"entry_id": doc["_id"], "message_id": doc["message_id"], "sender": sender})
        return reported


def _start_of(day: dt.date | dt.datetime) -> dt.datetime:
    """Midnight (Europe/Paris) of a day, in UTC; a datetime is taken as is."""
    if isinstance(day, dt.datetime):
        return day if day.tzinfo else day.replace(tzinfo=dt.UTC)
    from zoneinfo import ZoneInfo

    return dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("Europe/Paris")).astimezone(dt.UTC)
