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

Speed: every listing, count and search goes through `common.db.indexed_find` / `indexed_count`, so that
FerretDB runs it in SQLite on the indexes below (sort, skip and limit included) instead of reading the
collection; each index ends with `_id`, the tie-break of every sort, so a deep page is a walk along one
index. The side menu counts only unread messages (one small index range per folder). A folder's total
(`FolderTotals`) is the count of its entries older than a cut-off, cached per process, plus a count of
the recent ones (a short index range): delivery only adds new entries, and every other write that takes
an entry out of a folder or puts an older one in changes the mailbox's token
(`common.mailstore.mark_changed`), which voids the cached part. `bench/bench_webmail.py` measures it on
a mailbox of 100,000 messages.

Search: the query is folded like the entries' `search_text` (folded words of subject, sender, attachment
names and the first part of the body), `search_from` and `search_subject`, written by
`common.mailstore.summarize`, and each word must appear in them as a plain substring (an escaped literal
`$regex`, which the pushdown runs in SQLite); so "reunion" finds "Réunion". No `$text` (FerretDB has none).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

from common import mailstore
from common.db import BlobStore, indexed_count, indexed_find, utcnow
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


def _sorted_by(name: str, field: str, direction: int) -> IndexModel:
    """The index of a folder's list sorted on `field`; `_id` (the sort's tie-break) ends it."""
    keys = [("mailbox", ASCENDING), ("folder", ASCENDING), (field, direction), ("_id", direction)]
    return IndexModel(keys, name=name)


INDEXES = {
    "mailbox_entries": [
        *mailstore.INDEXES["mailbox_entries"],
        # sorts of a folder's list other than by date (mailstore's folder_by_date serves the date)
        _sorted_by("folder_by_sender", "from.address", ASCENDING),
        _sorted_by("folder_by_subject", "subject", ASCENDING),
        _sorted_by("folder_by_size", "size", DESCENDING),
        # search across every folder, newest first, and the date range of a search
        IndexModel(
            [("mailbox", ASCENDING), ("received_at", DESCENDING), ("_id", DESCENDING)], name="mailbox_by_date"
        ),
    ],
}


class FolderTotals:
    """Folder totals: the part older than a cut-off cached per (database, mailbox, folder), the recent
    part counted on each call.

    Counting a folder of 90,000 entries walks 90,000 index keys (about 16 ms on FerretDB here); the
    entries older than a day only change through the webmail (moves, deletions, restores, drafts), and
    each such write changes the mailbox's token (`mailstore.mark_changed`) after it is done. So a cached
    count holds while the token is the one read before counting; delivery's new entries (`received_at`
    = now) fall in the recent part, counted afresh (a range of the `folder_by_date` index). The cut-off
    moves forward once it is `RENEW_AFTER` old. At most `MAX_ENTRIES` are kept (oldest dropped first).
    """

    RECENT = dt.timedelta(days=1)
    RENEW_AFTER = dt.timedelta(days=2)
    MAX_ENTRIES = 20_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: OrderedDict[tuple[str, str, str], tuple[str, dt.datetime, int]] = OrderedDict()

    def total(self, entries, address: str, folder: str, token: str) -> int:
        key = (entries.database.name, address, folder)
        now = utcnow()
        with self._lock:
            cached = self._cached.get(key)
        if cached is None or cached[0] != token or now - cached[1] > self.RENEW_AFTER:
            cutoff = now - self.RECENT
            older = indexed_count(
                entries, {"mailbox": address, "folder": folder, "received_at": {"$lt": cutoff}}
            )
            cached = (token, cutoff, older)
            with self._lock:
                self._cached[key] = cached
                self._cached.move_to_end(key)
                while len(self._cached) > self.MAX_ENTRIES:
                    self._cached.popitem(last=False)
        _, cutoff, older = cached
        recent = indexed_count(
            entries, {"mailbox": address, "folder": folder, "received_at": {"$gte": cutoff}}
        )
        return older + recent


#: The process's cached folder totals.
TOTALS = FolderTotals()


class FolderError(ValueError):
    """A folder operation refused, with a French message for the user."""


@dataclass(frozen=True)
class Folder:
    """A folder of the side menu."""

    id: str
    label: str
    unread: int
    total: int | None  # None when not counted (see `Mailbox.folders`)
    system: bool
    icon: str = "fr-icon-folder-2-line"

    # (name, label_fr, unread, total), as tuples for callers that unpack them
    def __iter__(self):
        return iter((self.id, self.label, self.unread, self.total))


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

    def unread(self, folder: str) -> int:
        """How many entries of `folder` are unread (a range of the `folder_unread` index)."""
        return indexed_count(self.entries, {"mailbox": self.address, "folder": folder, "flags.seen": False})

    def total(self, folder: str, token: str | None = None) -> int:
        """How many entries `folder` holds (see `FolderTotals`); `token`: the mailbox's change token if
        the caller just read it."""
        if token is None:
            token = mailstore.change_token(self.db, self.address)
        return TOTALS.total(self.entries, self.address, folder, token)

    def _changed(self) -> None:
        """After a write that takes entries out of a folder or puts older ones in (see `FolderTotals`)."""
        mailstore.mark_changed(self.db, self.address)

    def folders(self, totals: bool = False) -> list[Folder]:
        """System folders then the user's own, each with its unread count, and its total if `totals`."""
        folders = [(name, label, True, FOLDER_ICONS[name]) for name, label in FOLDER_LABELS.items()]
        folders += [(own["id"], own["name"], False, "fr-icon-folder-2-line") for own in self.own_folders()]
        token = mailstore.change_token(self.db, self.address) if totals else ""
        return [
            Folder(
                folder,
                label,
                self.unread(folder),
                self.total(folder, token) if totals else None,
                system=system,
                icon=icon,
            )
            for folder, label, system, icon in folders
        ]

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
        self._changed()
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

        `total`, when the caller already knows it, saves a count query.
        """
        query = {"mailbox": self.address, "folder": folder}
        recipients = folder in RECIPIENT_FOLDERS
        if total is None:
            total = self.total(folder)
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
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Entries matching every criterion given (words of `text` all present), newest first.

        Returns the page and the number of results when it is known: when this page is not full, or is
        the last. A search is not counted, because counting reads every entry the criteria do not rule
        out (seconds in a mailbox of 100,000), whereas a page of frequent words is found in the newest
        entries; the page then only tells whether more follow (None means "more than this page's end").
        """
        clauses: list[dict[str, Any]] = [{"mailbox": self.address}]
        if folder:
            clauses.append({"folder": folder})
        for word in mailstore.fold(text).split()[:10]:
            clauses.append({"search_text": {"$regex": re.escape(word)}})
        if sender.strip():
            clauses.append({"search_from": {"$regex": re.escape(mailstore.fold(sender))}})
        if subject.strip():
            clauses.append({"search_subject": {"$regex": re.escape(mailstore.fold(subject))}})
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
        page_size = max(1, min(int(page_size), 200))
        page = max(1, int(page))
        rows, _ = self._paged(query, page, sort, order, page_size, with_recipients=True, total=-1, extra=1)
        if len(rows) > page_size:
            return rows[:page_size], None
        return rows, (page - 1) * page_size + len(rows)

    def _paged(self, query, page, sort, order, page_size, with_recipients, total=None, extra=0):
        """A page of `query` (plus `extra` rows after it) and its total (counted if None)."""
        page_size = max(1, min(int(page_size), 200))
        page = max(1, int(page))
        field = SORTS.get(sort, SORTS[DEFAULT_SORT])
        direction = ASCENDING if order == "asc" else DESCENDING
        projection = dict(LIST_FIELDS)
        if with_recipients:
            projection["to"] = 1
        if total is None:
            total = indexed_count(self.entries, query)
        cursor = indexed_find(
            self.entries,
            query,
            projection,
            sort=[(field, direction), ("_id", direction)],
            skip=(page - 1) * page_size,
            limit=page_size + extra,
        )
        return list(cursor), total

    def unread_count(self, folder: str = INBOX) -> int:
        return self.unread(folder)

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
        if moved:
            self._changed()
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
        if gone:
            self._changed()
        return moved, gone

    def empty_trash(self) -> int:
        """Delete every entry of Trash for good; returns how many."""
        trash = indexed_find(self.entries, {"mailbox": self.address, "folder": TRASH}, {"_id": 1})
        ids = [d["_id"] for d in trash]
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
        if restored:
            self._changed()
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
        if reported:
            self._changed()
        return reported


def _start_of(day: dt.date | dt.datetime) -> dt.datetime:
    """Midnight (Europe/Paris) of a day, in UTC; a datetime is taken as is."""
    if isinstance(day, dt.datetime):
        return day if day.tzinfo else day.replace(tzinfo=dt.UTC)
    from zoneinfo import ZoneInfo

    return dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("Europe/Paris")).astimezone(dt.UTC)
