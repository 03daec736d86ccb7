"""The academic address book: an in-memory prefix index over the directory's active accounts.

FerretDB v1 (our development and CI database) pushes only `_id` equality down to SQLite: any other
filter, `$regex` or `$in` included, scans the whole collection (seconds at 50,000 accounts, measured). So
search does not query the database: each directory process keeps this index, loaded at start-up, updated
by the writes it makes itself, and reloaded from the database every DIRECTORY_SEARCH_REFRESH seconds to
pick up other replicas' writes (eventual consistency, fine for an address book; authentication and
recipient resolution always read the database).

Names are folded (accents, case, apostrophes) into words; a query matches an entry when each of its words
is a prefix of one of the entry's words ("mar cam" finds Camille Martin). Distinct words are few (names
repeat), so a prefix is found by bisection in the sorted list of distinct words.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from directory.normalize import query_words


@dataclass(frozen=True)
class Entry:
    """One person of the address book."""

    account_id: str
    address: str
    display_name: str
    sort_key: str
    words: tuple[str, ...]
    establishment_uai: str
    departement: str
    function: str


class AddressBook:
    """Thread-safe prefix index; `search` returns (page of entries, total matches)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._postings: dict[str, set[str]] = {}
        self._words: list[str] = []
        self._sorted: list[Entry] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def replace_all(self, entries: Iterable[Entry]) -> None:
        """Swap the whole index for `entries` (a reload)."""
        fresh = AddressBook()
        for entry in entries:
            fresh._add(entry)
        fresh._words = sorted(fresh._postings)
        with self._lock:
            self._entries, self._postings, self._words = fresh._entries, fresh._postings, fresh._words
            self._sorted = None

    def upsert(self, entry: Entry) -> None:
        """Add or replace one entry."""
        with self._lock:
            self._remove(entry.account_id)
            for word in entry.words:
                if word not in self._postings:
                    bisect.insort(self._words, word)
            self._add(entry)
            self._sorted = None

    def remove(self, account_id: str) -> None:
        """Drop an entry (suspended, deleted or purged account)."""
        with self._lock:
            self._remove(account_id)
            self._sorted = None

    def _add(self, entry: Entry) -> None:
        self._entries[entry.account_id] = entry
        for word in entry.words:
            self._postings.setdefault(word, set()).add(entry.account_id)

    def _remove(self, account_id: str) -> None:
        old = self._entries.pop(account_id, None)
        if old is None:
            return
        for word in old.words:
            posting = self._postings.get(word)
            if posting is not None:
                posting.discard(account_id)
                if not posting:
                    del self._postings[word]
                    index = bisect.bisect_left(self._words, word)
                    if index < len(self._words) and self._words[index] == word:
                        del self._words[index]

    def _prefix_ids(self, prefix: str) -> set[str]:
        ids: set[str] = set()
        start = bisect.bisect_left(self._words, prefix)
        for index in range(start, len(self._words)):
            word = self._words[index]
            if not word.startswith(prefix):
                break
            ids |= self._postings[word]
        return ids

    def search(
        self,
        query: str = "",
        *,
        establishment_uai: str = "",
        departement: str = "",
        function: str = "",
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Entry], int]:
        """Entries matching every word of `query` as a prefix and every filter given, by name."""
        words = query_words(query)
        with self._lock:
            if words:
                ids: set[str] | None = None
                for word in sorted(words, key=len, reverse=True):
                    found = self._prefix_ids(word)
                    ids = found if ids is None else ids & found
                    if not ids:
                        return [], 0
                candidates = [self._entries[i] for i in ids or ()]
                candidates.sort(key=lambda e: (e.sort_key, e.account_id))
            else:
                if self._sorted is None:
                    self._sorted = sorted(self._entries.values(), key=lambda e: (e.sort_key, e.account_id))
                candidates = self._sorted
        matches = [
            e
            for e in candidates
            if (not establishment_uai or e.establishment_uai == establishment_uai)
            and (not departement or e.departement == departement)
            and (not function or e.function == function)
        ]
        return matches[offset : offset + limit], len(matches)
