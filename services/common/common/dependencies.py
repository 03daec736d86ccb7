"""nameko dependency providers shared by the nameko services: the database and the blob store.

Each provider makes its client in `setup()` and hands workers a small object with domain verbs, which is
also the seam unit tests replace (nameko's `worker_factory`).
"""

from __future__ import annotations

from nameko.extensions import DependencyProvider
from pymongo.database import Database

from common.db import BlobStore, ensure_indexes, get_database


class DatabaseProvider(DependencyProvider):
    """The platform's database; creates the indexes in `indexes` ({collection: [IndexModel]}) at start."""

    def __init__(self, indexes=None):
        self.indexes = indexes or {}

    def setup(self) -> None:
        self.database = get_database()
        ensure_indexes(self.database, self.indexes)

    def get_dependency(self, worker_ctx) -> Database:
        return self.database


class BlobStoreProvider(DependencyProvider):
    """The blob store holding raw messages (GridFS bucket `blobs`)."""

    def setup(self) -> None:
        self.store = BlobStore(get_database())

    def get_dependency(self, worker_ctx) -> BlobStore:
        return self.store
