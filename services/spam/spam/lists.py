"""Per-user sender allow and block lists.

A user who marks a message "Ce n'est pas un indésirable" puts its sender on their allow list; "Signaler
comme indésirable" puts it on their block list. The lists only ever change that user's verdicts, never the
shared model's. An entry is an address (`jean@exemple.fr`) or a whole domain (`@exemple.fr`); the newest
decision about a sender replaces the older one. One document per (user, sender) in `spam_sender_lists`,
unique, so a repeated report changes nothing.
"""

from __future__ import annotations

import enum

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from common.db import ensure_indexes, utcnow
from spam.parsing import domain_of

COLLECTION = "spam_sender_lists"
#: Entries one user may hold; beyond it the oldest are dropped.
MAX_ENTRIES = 5000

INDEXES = {
    COLLECTION: [
        IndexModel([("user", ASCENDING), ("sender", ASCENDING)], unique=True, name="user_sender"),
        IndexModel([("user", ASCENDING), ("updated_at", ASCENDING)], name="user_updated"),
    ],
}


class ListKind(enum.StrEnum):
    """Which list a sender is on."""

    ALLOW = "allow"
    BLOCK = "block"


def normalise_address(address: str) -> str:
    """A sender address or `@domain` entry, trimmed and lower-cased."""
    return address.strip().strip("<>").lower()


class SenderLists:
    """Read and change users' allow/block lists."""

    def __init__(self, db: Database):
        self.collection = db[COLLECTION]

    def ensure_indexes(self) -> None:
        """Create the collection's indexes (idempotent)."""
        ensure_indexes(self.collection.database, INDEXES)

    def set(self, user: str, sender: str, kind: ListKind) -> None:
        """Put `sender` on `user`'s allow or block list (replacing any earlier decision about it)."""
        user, sender = normalise_address(user), normalise_address(sender)
        if not user or not sender:
            return
        self.collection.update_one(
            {"user": user, "sender": sender},
            {"$set": {"list": str(kind), "updated_at": utcnow()}},
            upsert=True,
        )
        if self.collection.count_documents({"user": user}) > MAX_ENTRIES:
            oldest = self.collection.find({"user": user}, {"_id": 1}).sort("updated_at", ASCENDING).limit(1)
            for document in oldest:
                self.collection.delete_one({"_id": document["_id"]})

    def allow(self, user: str, sender: str) -> None:
        """Put `sender` on `user`'s allow list."""
        self.set(user, sender, ListKind.ALLOW)

    def block(self, user: str, sender: str) -> None:
        """Put `sender` on `user`'s block list."""
        self.set(user, sender, ListKind.BLOCK)

    def remove(self, user: str, sender: str) -> bool:
        """Take `sender` off `user`'s lists; True when it was on one."""
        result = self.collection.delete_one(
            {"user": normalise_address(user), "sender": normalise_address(sender)}
        )
        return result.deleted_count > 0

    def lookup(self, user: str, sender: str) -> ListKind | None:
        """Where `sender` stands for `user`: the address entry first, then its domain's."""
        user, sender = normalise_address(user), normalise_address(sender)
        if not user or not sender:
            return None
        candidates = [sender]
        domain = domain_of(sender)
        if domain:
            candidates.append("@" + domain)
        found = {
            doc["sender"]: doc["list"]
            for doc in self.collection.find({"user": user, "sender": {"$in": candidates}})
        }
        for candidate in candidates:
            if candidate in found:
                return ListKind(found[candidate])
        return None

    def entries(self, user: str) -> list[dict]:
        """`user`'s entries, newest first: [{"sender", "list", "updated_at"}]."""
        cursor = self.collection.find({"user": normalise_address(user)}, {"_id": 0, "user": 0})
        return list(cursor.sort("updated_at", -1))
