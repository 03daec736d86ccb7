"""The directory's collections, their indexes, and the shape of an account document.

Every lookup on a hot path is an `_id` equality, the only filter FerretDB v1 pushes down to SQLite:

* `directory_accounts` — one document per account, `_id` a random account id.
* `directory_addresses` — `_id` the full address (primary or alias) → account id, with a copy of what
  recipient resolution needs (primary mailbox, status, quota, display name), kept in step by every status
  change, so that resolving is a single lookup in a collection of small documents. The `_id` uniqueness
  allocates addresses and homonym suffixes (insert, retry with the next suffix on DuplicateKeyError).
  A purged account's addresses stay as `retired` tombstones, never given to someone else.
* `directory_person_keys` — `_id` "nom|prénom|date de naissance" (folded) → account ids: finds the
  candidates of a recovery by name, and of an import line (idempotent re-import), before the NUMEN hash of
  those few candidates is verified.
* `directory_reset_tokens` — `_id` the SHA-256 of a reset token (never the token itself).
* `directory_establishments` — `_id` the UAI code.
* `directory_state` — maintenance mode and homonym-suffix hints.
* `directory_audit` — append-only audit log (no secrets).

Secondary indexes below serve MongoDB in production (and the occasional operator query on FerretDB).
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

ACCOUNTS = "directory_accounts"
ADDRESSES = "directory_addresses"
PERSON_KEYS = "directory_person_keys"
RESET_TOKENS = "directory_reset_tokens"
ESTABLISHMENTS = "directory_establishments"
STATE = "directory_state"
AUDIT = "directory_audit"

INDEXES: dict[str, list[IndexModel]] = {
    ACCOUNTS: [
        IndexModel([("status", ASCENDING), ("purge_after", ASCENDING)], name="status_purge_after"),
        IndexModel([("sort_key", ASCENDING)], name="sort_key"),
    ],
    ADDRESSES: [IndexModel([("account_id", ASCENDING)], name="account_id")],
    RESET_TOKENS: [
        IndexModel([("expires_at", ASCENDING)], name="expires_at"),
        IndexModel([("account_id", ASCENDING)], name="account_id"),
    ],
    AUDIT: [
        IndexModel([("at", DESCENDING)], name="at"),
        IndexModel([("account_id", ASCENDING), ("at", DESCENDING)], name="account_at"),
    ],
}

#: Fields of an account document read by the address book reload (a projection keeps it light).
ADDRESS_BOOK_FIELDS = {
    "_id": 1,
    "address": 1,
    "display_name": 1,
    "sort_key": 1,
    "tokens": 1,
    "establishment_uai": 1,
    "departement": 1,
    "function": 1,
    "status": 1,
}


def ensure_directory_indexes(db: Database) -> None:
    """Create the directory's indexes (idempotent)."""
    from common.db import ensure_indexes

    ensure_indexes(db, INDEXES)


def person_key(last_name: str, first_name: str, birth_date: str) -> str:
    """The key of a person's identity: folded last and first names, and ISO date of birth."""
    from directory.normalize import name_part

    return f"{name_part(last_name)}|{name_part(first_name)}|{birth_date}"
