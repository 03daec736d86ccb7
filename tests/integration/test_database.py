"""The configured database (FerretDB v1.24 here, MongoDB in production): documents, blobs, indexes, expiry."""

from __future__ import annotations

import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from common import mailstore
from common.db import BlobNotFound, BlobStore, ensure_indexes, ping, purge_expired, utcnow


def test_database_answers_ping():
    assert ping()


def test_document_round_trip(database):
    document = {
        "_id": "msg-1",
        "subject": "Réunion de rentrée — salle 101",
        "to": ["camille.martin@ac-montpellier.fr"],
        "size": 1234,
        "received_at": utcnow(),
        "flags": {"seen": False},
    }
    database.messages.insert_one(document)
    assert database.messages.find_one({"_id": "msg-1"}) == document


def test_five_megabyte_blob_round_trip(database):
    store = BlobStore(database)
    data = os.urandom(5 * 1024 * 1024)

    assert store.put("raw-1", data, {"kind": "raw"}) is True
    assert store.get("raw-1") == data
    assert store.exists("raw-1")


def test_storing_a_blob_twice_is_a_no_op(database):
    store = BlobStore(database)
    assert store.put("raw-2", b"first") is True
    assert store.put("raw-2", b"second") is False
    assert store.get("raw-2") == b"first"
    assert database["blobs.files"].count_documents({"_id": "raw-2"}) == 1


def test_a_missing_blob_raises_and_delete_is_idempotent(database):
    store = BlobStore(database)
    with pytest.raises(BlobNotFound):
        store.get("nope")
    store.put("raw-3", b"x")
    store.delete("raw-3")
    store.delete("raw-3")
    assert not store.exists("raw-3")


def test_a_blob_of_one_chunk_is_one_document(database):
    store = BlobStore(database)
    assert store.put("raw-5", b"Bonjour", {"kind": "raw"}) is True
    head = database["blobs.files"].find_one({"_id": "raw-5"})
    assert (bytes(head["data"]), head["length"], head["chunks"]) == (b"Bonjour", 7, 0)
    assert database["blobs.chunks"].count_documents({}) == 0
    assert store.get("raw-5") == b"Bonjour" and store.metadata("raw-5") == {"kind": "raw"}
    store.delete("raw-5")
    assert not store.exists("raw-5")


def test_put_many_gives_each_blob_its_own_outcome(database):
    store = BlobStore(database, chunk_size=64)
    store.put("taken", b"first")
    large = os.urandom(200)  # four chunks: stored as by put

    outcomes = store.put_many(
        [
            ("small-1", b"one", {"n": 1}),
            ("taken", b"second", None),
            ("large", large, None),
            ("small-2", b"two", None),
        ]
    )
    assert outcomes == [True, False, True, True]
    assert store.get("small-1") == b"one" and store.metadata("small-1") == {"n": 1}
    assert store.get("taken") == b"first" and store.get("large") == large and store.get("small-2") == b"two"
    assert database["blobs.chunks"].count_documents({}) == 4


def test_concurrent_puts_share_inserts_and_each_caller_gets_its_own_outcome(database):
    store = BlobStore(database)
    store.put("taken", b"first")
    blobs = {f"raw-{n}": os.urandom(4096) for n in range(40)}
    with ThreadPoolExecutor(20) as pool:
        stored = dict(zip(blobs, pool.map(lambda item: store.put(*item), blobs.items()), strict=True))
        again = list(pool.map(lambda _: store.put("taken", b"second"), range(5)))
    assert all(stored.values()) and again == [False] * 5
    assert all(store.get(blob_id) == data for blob_id, data in blobs.items())
    assert store.get("taken") == b"first"


def test_concurrent_gets_share_lookups_and_each_caller_gets_its_own_blob(database):
    store = BlobStore(database)
    blobs = {f"raw-{n}": os.urandom(4096) for n in range(40)}
    blobs["large"] = os.urandom(600 * 1024)  # in chunks
    for blob_id, data in blobs.items():
        store.put(blob_id, data)
    wanted = [*blobs, "missing", *blobs, "missing"]

    def get(blob_id):
        try:
            return store.get(blob_id)
        except BlobNotFound:
            return None

    with ThreadPoolExecutor(20) as pool:
        got = list(pool.map(get, wanted))
    assert got == [blobs.get(blob_id) for blob_id in wanted]


def test_the_entry_writer_inserts_each_entry_once_under_concurrency(database):
    writer = mailstore.EntryWriter(database)
    entries = [{"_id": f"e{n}", "mailbox": f"m{n % 3}@ac-montpellier.fr", "size": 100} for n in range(30)]

    def deliver(entry):
        inserted = writer.insert([entry])
        writer.add_usage([e for e in [entry] if e["_id"] in inserted])
        return inserted

    with ThreadPoolExecutor(10) as pool:
        first = list(pool.map(deliver, entries))
        second = list(pool.map(deliver, entries))  # every event redelivered
    assert first == [{e["_id"]} for e in entries] and second == [set()] * 30
    assert database.mailbox_entries.count_documents({}) == 30
    usage = {d["_id"]: d["used_bytes"] for d in database.mailboxes.find()}
    assert usage == {f"m{n}@ac-montpellier.fr": 1000 for n in range(3)}


def test_insert_counted_stores_and_counts_each_entry_once_under_concurrency(database):
    writer = mailstore.EntryWriter(database)
    entries = [{"_id": f"e{n}", "mailbox": f"m{n % 3}@ac-montpellier.fr", "size": 100} for n in range(30)]
    with ThreadPoolExecutor(10) as pool:
        first = list(pool.map(lambda entry: writer.insert_counted([entry]), entries))
        second = list(pool.map(lambda entry: writer.insert_counted([entry]), entries))  # redelivered
    assert first == [{e["_id"]} for e in entries] and second == [set()] * 30
    assert database.mailbox_entries.count_documents({}) == 30
    usage = {d["_id"]: d["used_bytes"] for d in database.mailboxes.find()}
    assert usage == {f"m{n}@ac-montpellier.fr": 1000 for n in range(3)}


def test_unique_indexes_refuse_duplicates(database):
    specs = {
        "claims": [IndexModel([("consumer", ASCENDING), ("event_id", ASCENDING)], unique=True, name="claim")],
        "other": [IndexModel([("a", ASCENDING)], name="a"), IndexModel([("b", ASCENDING)], name="b")],
    }
    ensure_indexes(database, specs)
    ensure_indexes(database, specs)  # idempotent, even with several indexes (a FerretDB v1 pitfall)
    database.claims.insert_one({"consumer": "scan", "event_id": "e1"})
    database.claims.insert_one({"consumer": "spam", "event_id": "e1"})
    with pytest.raises(DuplicateKeyError):
        database.claims.insert_one({"consumer": "scan", "event_id": "e1"})


def test_a_half_written_blob_is_invisible_and_completed_by_the_next_put(database):
    store = BlobStore(database, chunk_size=4)
    database["blobs.chunks"].insert_one({"_id": "raw-4/0", "files_id": "raw-4", "n": 0, "data": b"junk"})
    assert not store.exists("raw-4")
    with pytest.raises(BlobNotFound):
        store.get("raw-4")
    assert store.put("raw-4", b"0123456789") is True
    assert store.get("raw-4") == b"0123456789"
    assert database["blobs.chunks"].count_documents({}) == 3


def test_purge_expired_stands_in_for_ttl_indexes(database):
    ensure_indexes(database, {"tokens": [IndexModel([("expires_at", ASCENDING)])]})
    now = utcnow()
    database.tokens.insert_many(
        [
            {"_id": "old", "expires_at": now - dt.timedelta(minutes=1)},
            {"_id": "new", "expires_at": now + dt.timedelta(minutes=10)},
        ]
    )
    assert purge_expired(database, "tokens", "expires_at", now) == 1
    assert [d["_id"] for d in database.tokens.find()] == ["new"]


def _ferretdb(database) -> bool:
    return "ferretdbFeatures" in database.client.admin.command("buildInfo")


@pytest.mark.parametrize("key", ["entry-42", ObjectId()], ids=["string", "objectid"])
def test_id_lookups_use_an_index_on_ferretdb(database, key):
    """FerretDB v1's SQLite backend used to scan the whole table for an `_id` lookup (its filter and its
    `_id` index were different SQL expressions); the project's build makes them the same
    (scripts/stack.py, FERRETDB_PATCHES). FerretDB's `explain` runs SQLite's EXPLAIN QUERY PLAN on the
    very query it sends, so the plan shows which one the running server has."""
    if not _ferretdb(database):
        pytest.skip("MongoDB serves _id lookups from its _id index")
    database.entries.insert_many([{"_id": key, "n": 0}, *({"_id": f"other-{n}", "n": n} for n in range(50))])
    plan = database.command("explain", {"find": "entries", "filter": {"_id": key}})
    assert plan["filterPushdown"] is True
    details = " ".join(plan["queryPlanner"]["Plan"])
    assert "USING INDEX entries_" in details and "__id_" in details, details
    assert "SCAN" not in details, details
    assert database.entries.find_one({"_id": key}) == {"_id": key, "n": 0}
    # Updates and deletes by `_id` go through the same expression.
    database.entries.update_one({"_id": key}, {"$set": {"n": 1}})
    assert database.entries.find_one({"_id": key})["n"] == 1
    database.entries.delete_one({"_id": key})
    assert database.entries.find_one({"_id": key}) is None
    assert database.entries.count_documents({}) == 50


def test_an_update_command_of_many_matching_update_one_statements_completes(database):
    """One update command of 300 `update_one` statements that each match a document (a bulk write, as
    the directory's establishment import and the demo seed send). Upstream FerretDB v1 kept each matched
    statement's rows open until the end of the command and waited forever for a connection after about
    100 (tools/ferretdb/update-closes-rows.patch); a time-out makes a regression fail instead of hang."""
    from pymongo import MongoClient, UpdateOne

    from common.config import get_settings

    database.items.insert_many([{"_id": f"e{n}", "n": n} for n in range(300)])
    with MongoClient(get_settings().mongodb_url, socketTimeoutMS=30_000) as client:
        items = client[database.name].items
        result = items.bulk_write(
            [UpdateOne({"_id": f"e{n}"}, {"$set": {"seen": True}}, upsert=True) for n in range(300)],
            ordered=False,
        )
        assert result.matched_count == 300
        assert items.count_documents({"seen": True}) == 300
