"""The configured database (FerretDB v1.24 here, MongoDB in production): documents, blobs, indexes, expiry."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

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
