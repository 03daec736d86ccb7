"""Database access shared by every service: client, indexes, blob store, expiry.

The platform speaks the MongoDB wire protocol through pymongo, to MongoDB in production and to FerretDB v1
(SQLite backend) on development and CI machines. Only the subset both support is used: no multi-document
transactions, no change streams, no TTL indexes (`purge_expired` expires in code), no `$text`, no
`$lookup`, and no reliance on `find_one_and_update` being atomic (ids come from unique indexes instead).

Raw messages, attachments and models are stored with `BlobStore`: GridFS's layout (small blobs whole in
their files document), read and written by `_id` only (see its docstring for why), under ids the caller
chooses, so a second store is a no-op.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pymongo
from pymongo import IndexModel
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.database import Database

from common.config import get_settings
from common.errors import PermanentFailure
from common.groupcommit import GroupCommit

#: The query comment that asks the project's FerretDB build to run a query entirely in SQLite, on the
#: indexes: filter, sort, skip and limit, or a count (see `indexed_find`). MongoDB only logs it.
PUSHDOWN = "pushdown"

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


def indexed_find(
    collection: Collection,
    query: Mapping[str, Any],
    projection: Mapping[str, Any] | None = None,
    sort: Sequence[tuple[str, int]] = (),
    skip: int = 0,
    limit: int = 0,
) -> Cursor:
    """`find` for queries an index serves, with the pushdown hint (`PUSHDOWN`).

    On FerretDB (SQLite backend) only `_id` filters are otherwise pushed down: any other `find` reads and
    filters the whole collection in FerretDB, and sorts, skips and limits in memory. With the hint, this
    project's build translates the query to SQL on the indexes when it can: equality, `$gt`/`$gte`/`$lt`/
    `$lte`/`$in` on strings, numbers, booleans and dates, literal `$regex`, `$and`, `$or` (other queries
    run as usual). The fields compared must hold scalars, never arrays: an array would not be matched by
    its elements as MongoDB matches it. Sort on indexed fields, with a unique last key (`_id`).
    """
    cursor = collection.find(query, projection, comment=PUSHDOWN)
    if sort:
        cursor = cursor.sort(list(sort))
    if skip:
        cursor = cursor.skip(skip)
    if limit:
        cursor = cursor.limit(limit)
    return cursor


def indexed_count(collection: Collection, query: Mapping[str, Any]) -> int:
    """The number of documents matching `query`, counted on the indexes (see `indexed_find`)."""
    return int(collection.database.command("count", collection.name, query=query, comment=PUSHDOWN)["n"])


def insert_outcomes(collection, documents: Sequence[Mapping[str, Any]]) -> list[bool | Exception]:
    """Insert `documents` in one `insert_many` (unordered); the outcome of each, in order.

    True: inserted. False: a document with its `_id` (or another unique key) is already there. An
    exception: that document failed otherwise. A failure of the whole command raises.
    """
    try:
        collection.insert_many(documents, ordered=False)
    except pymongo.errors.BulkWriteError as exc:
        outcomes: list[bool | Exception] = [True] * len(documents)
        for error in exc.details.get("writeErrors", []):
            code = error.get("code")
            outcomes[error["index"]] = (
                False if code == 11000 else pymongo.errors.WriteError(error.get("errmsg", ""), code, error)
            )
        return outcomes
    return [True] * len(documents)


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


class BlobNotFound(KeyError, PermanentFailure):
    """No blob is stored under that id.

    A permanent failure for event handlers: ingest deletes the blob of a message whose `mail.received`
    it could not confirm (the sender retries), so an event naming a missing blob is dead-lettered, not
    retried.
    """


class BlobStore:
    """Immutable blobs (raw messages, attachments, models) under ids the caller chooses.

    The layout is GridFS's — a `<bucket>.files` document per blob, its bytes in `<bucket>.chunks` documents
    with `files_id` and `n` — except that a blob that fits in one chunk (every ordinary message) keeps its
    bytes in its files document (`data`, with `chunks: 0`): one write to store it and one read to load it,
    instead of three and two. Such writes from concurrent callers of one store share one `insert_many`
    (`common.groupcommit`); each caller still returns only once its blob is stored. Reads of files
    documents that concurrent callers ask at the same time share one `$in` on `_id` (a lone read is a
    plain `_id` lookup). Every read and write goes by `_id`: the files document's `_id` is the blob id
    and a chunk's is `<blob id>/<n>`.
    FerretDB v1's SQLite backend pushes only a lone string `_id` filter down to SQLite and scans the
    whole collection for any other filter, so GridFS's own chunk lookups (`files_id` and `n`) would read
    every chunk ever stored for each blob read; an `$in` on `_id` is served by the `_id` index only with
    the project's pushdown (`indexed_find`), which the batched reads use.

    A larger blob's chunks are written first and its files document last, so a blob is visible only once
    complete; a second `put` of the same id stores nothing.
    """

    def __init__(self, db: Database, bucket: str = "blobs", chunk_size: int = 255 * 1024):
        self._files = db[f"{bucket}.files"]
        self._chunks = db[f"{bucket}.chunks"]
        self._chunk_size = chunk_size
        self._heads = GroupCommit(lambda heads: insert_outcomes(self._files, heads))
        self._reads = GroupCommit(self._read_heads)

    def put(self, blob_id: str, data: bytes, metadata: Mapping[str, Any] | None = None) -> bool:
        """Store `data` under `blob_id`. Returns False (and stores nothing) when it is already stored."""
        if len(data) <= self._chunk_size:  # one insert: stored whole or not at all
            outcome = self._heads.submit([self._head(blob_id, data, metadata)])[0]
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        if self.exists(blob_id):
            return False
        head = self._head(blob_id, data, metadata, inline=False)
        head["chunks"] = -(-len(data) // self._chunk_size)
        for n in range(head["chunks"]):
            piece = data[n * self._chunk_size : (n + 1) * self._chunk_size]
            # Overwrites the chunk a half-written earlier attempt may have left.
            self._chunks.replace_one(
                {"_id": f"{blob_id}/{n}"},
                {"_id": f"{blob_id}/{n}", "files_id": blob_id, "n": n, "data": piece},
                upsert=True,
            )
        try:
            self._files.insert_one(head)
        except pymongo.errors.DuplicateKeyError:
            return False
        return True

    def put_many(
        self, blobs: Sequence[tuple[str, bytes, Mapping[str, Any] | None]]
    ) -> list[bool | Exception]:
        """Store each (blob id, data, metadata) of `blobs`; one outcome per blob, in order: True (stored),
        False (already stored, nothing written) or the exception its store raised. The blobs that fit in
        one chunk share one `insert_many` (a failure of that whole command raises); a larger one is
        stored as by `put`."""
        outcomes: list[bool | Exception | None] = [None] * len(blobs)
        heads: list[dict[str, Any]] = []
        small: list[int] = []
        for index, (blob_id, data, metadata) in enumerate(blobs):
            if len(data) <= self._chunk_size:
                heads.append(self._head(blob_id, data, metadata))
                small.append(index)
                continue
            try:
                outcomes[index] = self.put(blob_id, data, metadata)
            except Exception as exc:  # noqa: BLE001 - that blob's outcome
                outcomes[index] = exc
        if heads:
            for index, outcome in zip(small, self._heads.submit(heads), strict=True):
                outcomes[index] = outcome
        return outcomes  # type: ignore[return-value] - every slot is filled

    def _head(
        self, blob_id: str, data: bytes, metadata: Mapping[str, Any] | None, inline: bool = True
    ) -> dict[str, Any]:
        """The files document of a blob: with its bytes inline (`inline`, a blob that fits in one
        chunk), or without (its chunks are counted in by `put`)."""
        head = {
            "_id": blob_id,
            "length": len(data),
            "chunkSize": self._chunk_size,
            "chunks": 0,
            "uploadDate": utcnow(),
            "metadata": dict(metadata or {}),
        }
        if inline:
            head["data"] = data
        return head

    def get(self, blob_id: str) -> bytes:
        """The bytes stored under `blob_id`; raises BlobNotFound."""
        return self._load(blob_id, self._reads.submit([blob_id])[0])

    def get_many(self, blob_ids: list[str]) -> list[bytes | Exception]:
        """The bytes of each of `blob_ids`, read together, or the exception that blob's read raised
        (BlobNotFound for a missing one); raises when the read they share fails."""
        heads = self._reads.submit(blob_ids)
        results: list[bytes | Exception] = []
        for blob_id, head in zip(blob_ids, heads, strict=True):
            try:
                results.append(self._load(blob_id, head))
            except Exception as exc:  # noqa: BLE001 - that blob's outcome (a chunk read of a large one)
                results.append(exc)
        return results

    def _load(self, blob_id: str, head: dict[str, Any] | None) -> bytes:
        if head is None:
            raise BlobNotFound(blob_id)
        if "data" in head:
            data = bytes(head["data"])
        else:
            parts = []
            for n in range(head["chunks"]):
                chunk = self._chunks.find_one({"_id": f"{blob_id}/{n}"})
                if chunk is None:
                    raise BlobNotFound(f"{blob_id} (chunk {n} missing)")
                parts.append(bytes(chunk["data"]))
            data = b"".join(parts)
        if len(data) != head["length"]:
            raise BlobNotFound(f"{blob_id} (stored {len(data)} of {head['length']} bytes)")
        return data

    def _read_heads(self, blob_ids: list[str]) -> list[dict[str, Any] | None]:
        """The files documents of `blob_ids` (None where absent): one `_id` lookup for a lone id, one
        `$in` on the `_id` index (`indexed_find`) for the reads that concurrent callers asked at once."""
        if len(blob_ids) == 1:
            return [self._files.find_one({"_id": blob_ids[0]})]
        heads = indexed_find(self._files, {"_id": {"$in": sorted(set(blob_ids))}})
        found = {head["_id"]: head for head in heads}
        return [found.get(blob_id) for blob_id in blob_ids]

    def exists(self, blob_id: str) -> bool:
        """True when a complete blob is stored under `blob_id`."""
        return self._files.find_one({"_id": blob_id}, {"_id": 1}) is not None

    def metadata(self, blob_id: str) -> dict[str, Any]:
        """The metadata stored with `blob_id`; raises BlobNotFound."""
        head = self._files.find_one({"_id": blob_id}, {"metadata": 1})
        if head is None:
            raise BlobNotFound(blob_id)
        return head.get("metadata", {})

    def delete(self, blob_id: str) -> None:
        """Remove the blob (no error if it is absent); the files document goes first."""
        head = self._files.find_one({"_id": blob_id}, {"chunks": 1})
        self._files.delete_one({"_id": blob_id})
        # No files document: perhaps the first chunk of a larger blob whose store was interrupted.
        count = head["chunks"] if head else 1
        for n in range(count):
            self._chunks.delete_one({"_id": f"{blob_id}/{n}"})
