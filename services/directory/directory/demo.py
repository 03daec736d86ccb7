"""Demo and benchmark data: a synthetic academy loaded in bulk, and the demo accounts `make run` prints.

`seed_demo` is idempotent: the establishments are upserted, the demo accounts are created by the normal
(idempotent) path, and the synthetic population is loaded once (a marker in `directory_state` records the
seed and sizes). Synthetic staff are flagged `synthetic: True`; their NUMEN hash is one shared hash of a
random value nobody knows, so none of them can log in — only the demo accounts below can. Their NUMENs
are synthetic and printed by the demo command only.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pymongo
from pymongo.errors import BulkWriteError

from directory import synthetic
from directory.importer import AccountRequest
from directory.normalize import base_local_part, display_name, fold, local_part, tokens
from directory.service import ACTIVE, Directory
from directory.store import person_key


@dataclass(frozen=True)
class DemoAccount:
    first_name: str
    last_name: str
    numen: str
    birth_date: dt.date
    function: str
    activated: bool


DEMO_ACCOUNTS = (
    DemoAccount("Camille", "Martin", "11A2600001DMO", dt.date(1984, 5, 17), "enseignant", True),
    DemoAccount("Hélène", "Lefèvre-Dupont", "11E2600002DMO", dt.date(1979, 11, 3), "enseignant", False),
    DemoAccount("Yann", "Le Goff", "11G2600003DMO", dt.date(1990, 2, 28), "direction", False),
    DemoAccount("Aïcha", "N'Diaye", "11A2600004DMO", dt.date(1972, 8, 9), "inspecteur", False),
)


def establishment_rows(items: Iterable[synthetic.SyntheticEstablishment]) -> list[dict[str, Any]]:
    """Synthetic establishments as `Directory.load_establishments` takes them."""
    return [
        {
            "uai": e.uai,
            "name": e.name,
            "type": e.type,
            "commune": e.commune,
            "departement": e.departement,
            "synthetic": True,
        }
        for e in items
    ]


def bulk_load_people(
    directory: Directory,
    people: list[synthetic.SyntheticPerson],
    *,
    numen_hash: str,
    password_hash: str | None = None,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Insert synthetic people in bulk (no per-account hashing): addresses are allocated in memory
    against the addresses already taken, then written with insert_many. Returns how many were added."""
    taken = {doc["_id"] for doc in directory.addresses.find({}, {"_id": 1})}
    known_keys = {doc["_id"] for doc in directory.person_keys.find({}, {"_id": 1})}
    # Upserts cost a round trip each (seconds per thousand on FerretDB): new keys are inserted in bulk.
    new_keys: dict[str, list[str]] = {}
    existing_key_updates: list[pymongo.UpdateOne] = []
    ranks: Counter[str] = Counter()
    establishments = {e["_id"]: e for e in directory.establishments.find()}
    now = directory._now()
    added = 0
    for start in range(0, len(people), batch):
        addresses, accounts, keys = [], [], []
        for p in people[start : start + batch]:
            base = base_local_part(p.first_name, p.last_name)
            rank = ranks[base] or 1
            while f"{local_part(base, rank)}@{directory.domain}" in taken:
                rank += 1
            ranks[base] = rank + 1
            address = f"{local_part(base, rank)}@{directory.domain}"
            taken.add(address)
            account_id = uuid.uuid4().hex
            birth = p.birth_date.isoformat()
            key = person_key(p.last_name, p.first_name, birth)
            addresses.append(
                {
                    "_id": address,
                    "account_id": account_id,
                    "kind": "primary",
                    "mailbox": address,
                    "status": ACTIVE,
                    "quota_bytes": directory.default_quota,
                    "display_name": display_name(p.first_name, p.last_name),
                }
            )
            keys.append((key, account_id, address))
            accounts.append(
                {
                    "_id": account_id,
                    "address": address,
                    "aliases": [],
                    "base_local": base,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                    "display_name": display_name(p.first_name, p.last_name),
                    "sort_key": f"{fold(p.last_name)} {fold(p.first_name)}",
                    "tokens": tokens(p.last_name, p.first_name),
                    "birth_date": birth,
                    "person_key": key,
                    "numen_hash": numen_hash,
                    "password_hash": password_hash,
                    "must_change_password": password_hash is None,
                    "status": ACTIVE,
                    "session_epoch": 1,
                    "quota_bytes": directory.default_quota,
                    "synthetic": True,
                    "created_at": now,
                    "updated_at": now,
                    "password_changed_at": None,
                    "deleted_at": None,
                    "purge_after": None,
                    "establishment_uai": p.establishment_uai,
                    "departement": establishments.get(p.establishment_uai, {}).get("departement", ""),
                    "function": p.function,
                    "recovery_address": p.recovery_address,
                }
            )
        try:
            directory.addresses.insert_many(addresses, ordered=False)
        except BulkWriteError as exc:  # taken meanwhile by another writer: leave those people out
            lost = {e["op"]["_id"] for e in exc.details.get("writeErrors", [])}
            accounts = [a for a in accounts if a["address"] not in lost]
        if accounts:
            directory.accounts.insert_many(accounts, ordered=False)
            kept = {a["address"] for a in accounts}
            for key, account_id, address in keys:
                if address not in kept:
                    continue
                if key in known_keys:
                    existing_key_updates.append(
                        pymongo.UpdateOne({"_id": key}, {"$addToSet": {"account_ids": account_id}})
                    )
                else:
                    new_keys.setdefault(key, []).append(account_id)
        added += len(accounts)
        if progress:
            progress(len(people[start : start + batch]))
    items = [{"_id": key, "account_ids": ids} for key, ids in new_keys.items()]
    for start in range(0, len(items), batch):
        directory.person_keys.insert_many(items[start : start + batch], ordered=False)
    if existing_key_updates:
        directory.person_keys.bulk_write(existing_key_updates, ordered=False)
    hints = [
        pymongo.UpdateOne({"_id": f"homonyms:{base}"}, {"$max": {"next": rank}}, upsert=True)
        for base, rank in ranks.items()
        if rank > 10
    ]
    if hints:  # for the one-by-one allocator, where walking from 1 would take a few tries
        directory.state.bulk_write(hints, ordered=False)
    directory.reload_address_book()
    return added


def ensure_demo_accounts(directory: Directory, demo_password: str, uai: str) -> list[tuple[DemoAccount, str]]:
    """Create the demo accounts (idempotent); activate the first with `demo_password`."""
    created = []
    for demo in DEMO_ACCOUNTS:
        request = AccountRequest(
            demo.last_name,
            demo.first_name,
            demo.numen,
            demo.birth_date,
            uai,
            demo.function,
            f"{fold(demo.first_name)}.demo@example.org",
        )
        result = directory.create_account(request, actor="seed-demo", synthetic=True, source="seed-demo")
        doc = result.account or {}
        if demo.activated and not directory.hasher.verify(doc.get("password_hash"), demo_password):
            directory.accounts.update_one(
                {"_id": doc["_id"]},
                {
                    "$set": {
                        "password_hash": directory.hasher.hash(demo_password),
                        "must_change_password": False,
                        "password_changed_at": directory._now(),
                    }
                },
            )
        created.append((demo, result.address))
    return created


def seed_demo(
    directory: Directory,
    *,
    establishments: int = 400,
    staff: int = 5000,
    seed: int = 2026,
    demo_password: str,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Load a synthetic academy and the demo accounts; running it again changes nothing."""
    directory.prepare()
    ests = synthetic.establishments(establishments, seed)
    directory.load_establishments(establishment_rows(ests), actor="seed-demo")
    demo = ensure_demo_accounts(directory, demo_password, ests[0].uai)
    marker_id = f"synthetic_seed:{seed}:{establishments}:{staff}"
    added = 0
    if directory.state.find_one({"_id": marker_id}) is None:
        people = list(synthetic.people(staff, ests, seed))
        unknown = directory.hasher.hash(secrets.token_urlsafe(32))
        added = bulk_load_people(directory, people, numen_hash=unknown, progress=progress)
        directory.state.insert_one({"_id": marker_id, "loaded_at": directory._now(), "accounts": added})
        directory.audit(
            "account.synthetic_loaded", actor="seed-demo", outcome="ok", accounts=added, seed=seed
        )
    else:
        directory.reload_address_book()
    return {"establishments": len(ests), "synthetic_added": added, "demo": demo}
