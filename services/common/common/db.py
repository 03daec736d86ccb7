"""Database access shared by every service: client, indexes, blob store, expiry.

The platform speaks the MongoDB wire protocol through pymongo, to MongoDB in production and to FerretDB v1
(SQLite backend) on development and CI machines. Only the subset both support is used: no multi-document
transactions, no change streams, no TTL indexes (`purge_expired` expires in code), no `$text`, no
`$lookup`, and no reliance on `find_one_and_update` being atomic (ids come from unique indexes instead).

GridFS works on FerretDB v1.24 (checked by tests/integration/test_database.py), so raw messages and
attachments are stored with `BlobStore`, a thin GridFS wrapper whose ids are chosen by the caller so that a
second store of the same blob is a no-op.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import gridfs
import pymongo
from gridfs.errors import FileExists, NoFile
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from common.config import get_settings

_clients: dict[str, pymongo.MongoClient] = {}
_clients_lock = threading.Lock()


def get_client(url: str | None = None) -> pymongo.MongoClient:
    """A process-wide client for `url` (default: MONGODB_URL); pymongo pools connections inside it."""
    url = url or get_settings().mongodb_url
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = pymongo.MongoClient(
                url,
                serverSelectionTimeoutMS=5000,
                connectTimeoutMS=5000,
                tz_aware=True,
                appname="webmail-academique",
            )
            _clients[url] = client
        return client


def get_database(name: str | None = None, url: str | None = None) -> Database:
    """The platform's database (DATABASE_NAME unless `name` is given)."""
    return get_client(url)[name or get_settings().database_name]


def ping(url: str | None = None) -> bool:
    """True when the database answers a `ping` command."""
    try:
        get_client(url).admin.command("ping")
    except pymongo.errors.PyMongoError:
        return False
    return True


#: Indexes of the collections the common package itself owns. Services declare theirs beside their code
#: and pass them to `ensure_indexes` at start-up.
CORE_INDEXES: dict[str, list[IndexModel]] = {
    # One document per (consumer, event id): the idempotency record of every event handler.
    "processed_events": [
        IndexModel([("consumer", ASCENDING), ("event_id", ASCENDING)], unique=True, name="consumer_event"),
        IndexModel([("processed_at", ASCENDING)], name="processed_at"),
    ],
}


def ensure_indexes(db: Database, specs: Mapping[str, Sequence[IndexModel]]) -> None:
    """Create the indexes in `specs` ({collection: [IndexModel, ...]}); existing ones are left alone.

    Indexes are created one at a time, and only those whose name is not there yet: FerretDB v1.24 drops
    the connection when a single createIndexes command re-creates several existing indexes.
    """
    for collection, indexes in specs.items():
        existing = {index["name"] for index in db[collection].list_indexes()} if indexes else set()
        for index in indexes:
            if index.document["name"] not in existing:
                db[collection].create_indexes([index])


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, truncated to milliseconds as BSON stores it."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def purge_expired(db: Database, collection: str, field: str, now: dt.datetime | None = None) -> int:
    """Delete documents whose `field` (a datetime) is in the past; returns how many went.

    Stands in for TTL indexes, which FerretDB v1 does not support. Callers run it periodically.
    """
    result = db[collection].delete_many({field: {"$lte": now or utcnow()}})
    return result.deleted_count


class BlobNotFound(KeyError):
    """No blob is stored under that id."""


class BlobStore:
    """Immutable blobs (raw messages, attachments) in a GridFS bucket, under ids the caller chooses."""

    def __init__(self, db: Database, bucket: str = "blobs", chunk_size: int = 255 * 1024):
        self._bucket = gridfs.GridFSBucket(db, bucket_name=bucket, chunk_size_bytes=chunk_size)
        self._files = db[f"{bucket}.files"]

    def put(self, blob_id: str, data: bytes, metadata: Mapping[str, Any] | None = None) -> bool:
        """Store `data` under `blob_id`. Returns False (and stores nothing) when it is already stored.

        A half-written earlier attempt (chunks without a files document) is overwritten, since GridFS
        writes the files document last.
        """
        if self._files.find_one({"_id": blob_id}, {"_id": 1}) is not None:
            return False
        self._bucket._chunks.delete_many({"files_id": blob_id})
        try:
            self._bucket.upload_from_stream_with_id(blob_id, blob_id, data, metadata=dict(metadata or {}))
        except FileExists:
            return False
        except pymongo.errors.DuplicateKeyError:
            return False
        return True

    def get(self, blob_id: str) -> bytes:
        """The bytes stored under `blob_id`; raises BlobNotFound."""
        try:
            return self._bucket.open_download_stream(blob_id).read()
        except NoFile:
            raise BlobNotFound(blob_id) from None

    def exists(self, blob_id: str) -> bool:
        """True when a complete blob is stored under `blob_id`."""
        return self._files.find_one({"_id": blob_id}, {"_id": 1}) is not None

    def delete(self, blob_id: str) -> None:
        """Remove the blob (no error if it is absent)."""
        try:
            self._bucket.delete(blob_id)
        except NoFile:
            pass
