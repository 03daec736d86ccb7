"""Per-user sender allow and block lists.

A user who marks a message "Ce n'est pas un indésirable" puts its sender on their allow list; "Signaler
comme indésirable" puts it on their block list. The lists only ever change that user's verdicts, never the
shared model's. An entry is an address (`jean@exemple.fr`) or a whole domain (`@exemple.fr`); the newest
decision about a sender replaces the older one. One document per (user, sender) in `spam_sender_lists`,
unique, so a repeated report changes nothing.

The spam service's lists (`SenderLists(db, cache_seconds=LOOKUP_CACHE_SECONDS)`, made by
`SpamClassifier.from_database`) remember lookups for a few seconds per (user, sender), since a burst of
mail from one sender to one user would otherwise ask the database the same question for every message
(on FerretDB v1 each lookup scans the collection). A change made through this object (the spam
service's feedback) forgets that user's remembered lookups at once; one made by another process
(`python -m spam.admin`, another spam worker) is seen within `LOOKUP_CACHE_SECONDS`. By default
nothing is remembered.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import OrderedDict

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from common.db import ensure_indexes, utcnow
from spam.parsing import domain_of

COLLECTION = "spam_sender_lists"
#: Entries one user may hold; beyond it the oldest are dropped.
MAX_ENTRIES = 5000
#: How long a lookup's answer is reused, and how many (user, sender) answers are kept.
LOOKUP_CACHE_SECONDS = 10.0
LOOKUP_CACHE_SIZE = 20_000

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

    def __init__(self, db: Database, cache_seconds: float = 0.0, clock=time.monotonic):
        self.collection = db[COLLECTION]
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], tuple[float, ListKind | None]] = OrderedDict()

    def _forget(self, user: str) -> None:
        with self._lock:
            for key in [key for key in self._cache if key[0] == user]:
                del self._cache[key]

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
        self._forget(user)

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
        self._forget(normalise_address(user))
        return result.deleted_count > 0

    def lookup(self, user: str, sender: str) -> ListKind | None:
        """Where `sender` stands for `user`: the address entry first, then its domain's."""
        user, sender = normalise_address(user), normalise_address(sender)
        if not user or not sender:
            return None
        if self._cache_seconds <= 0:
            return self._lookup(user, sender)
        key, now = (user, sender), self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        kind = self._lookup(user, sender)
        with self._lock:
            self._cache[key] = (now + self._cache_seconds, kind)
            self._cache.move_to_end(key)
            while len(self._cache) > LOOKUP_CACHE_SIZE:
                self._cache.popitem(last=False)
        return kind

    def _lookup(self, user: str, sender: str) -> ListKind | None:
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
