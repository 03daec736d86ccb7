"""Model versions in the database, one of them active, so that every spam worker scores with the same model.

A version is immutable: its metadata is a document of `spam_models` (`_id` = version) and its artifact a
blob of the `spam_models` GridFS bucket (common.db.BlobStore), cached on local disk (SPAM_MODEL_DIR) after
the first load. Which version is active is one document of `spam_model_state` (`_id: "active"`) holding
the active version and the history of earlier active versions, so that `rollback` returns to the one
before. Workers poll that document (`active_version`, a one-document read) and reload when it changes.

FerretDB v1 has no transactions: `publish` writes the blob first and the metadata document last, so a
version that is listed always has its artifact; `activate` is a single-document replace.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pymongo import DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.config import get_settings
from common.db import BlobNotFound, BlobStore, ensure_indexes, utcnow
from spam.exceptions import ModelNotFound
from spam.model import SpamModel

log = logging.getLogger(__name__)

MODELS = "spam_models"
STATE = "spam_model_state"
ACTIVE_ID = "active"
#: Earlier active versions remembered for rollback.
HISTORY_LENGTH = 20

INDEXES = {
    MODELS: [IndexModel([("created_at", DESCENDING)], name="created_at")],
}


def default_model_dir() -> Path:
    """SPAM_MODEL_DIR, or STATE_DIR/models/spam."""
    settings = get_settings()
    return Path(settings.spam_model_dir or settings.state_path / "models" / "spam")


class ModelRegistry:
    """Publish, list, load, activate and roll back spam model versions."""

    def __init__(self, db: Database, cache_dir: Path | None = None):
        self.db = db
        self.blobs = BlobStore(db, MODELS)
        self.cache_dir = cache_dir or default_model_dir()

    def ensure_indexes(self) -> None:
        """Create the registry's indexes (idempotent)."""
        ensure_indexes(self.db, INDEXES)

    # --- writing ------------------------------------------------------------------------------------
    def publish(self, model: SpamModel, kind: str = "trained", parent: str | None = None) -> str:
        """Store `model` as a new version (idempotent for the same version); returns the version."""
        data = model.to_bytes()
        self.blobs.put(model.version, data, {"kind": kind})
        self._cache(model.version, data)
        metrics = model.metadata.get("test_metrics") or {}
        document = {
            "_id": model.version,
            "kind": kind,
            "parent": parent,
            "created_at": utcnow(),
            "size": len(data),
            "threshold": model.threshold,
            "metadata": model.metadata,
            "summary": {
                "cv_auc": (model.metadata.get("cv_metrics") or {}).get("auc"),
                "test_auc": metrics.get("auc"),
                "test_recall_at_fpr_0_1pct": metrics.get("recall_at_fpr_0_1pct"),
                "feedback_reports": model.metadata.get("feedback_reports", 0),
            },
        }
        try:
            self.db[MODELS].insert_one(document)
        except DuplicateKeyError:  # published before: a version is immutable, keep the first record
            return model.version
        log.info("spam model published", extra={"version": model.version, "kind": kind})
        return model.version

    def activate(self, version: str) -> None:
        """Make `version` the active model of every worker."""
        if self.db[MODELS].find_one({"_id": version}, {"_id": 1}) is None:
            raise ModelNotFound(version)
        state = self.db[STATE].find_one({"_id": ACTIVE_ID}) or {}
        current = state.get("version")
        if current == version:
            return
        history = ([current] if current else []) + list(state.get("history", []))
        self.db[STATE].replace_one(
            {"_id": ACTIVE_ID},
            {
                "_id": ACTIVE_ID,
                "version": version,
                "history": history[:HISTORY_LENGTH],
                "changed_at": utcnow(),
            },
            upsert=True,
        )
        log.info("spam model activated", extra={"version": version, "previous": current})

    def rollback(self) -> str:
        """Return to the version that was active before the current one; returns it."""
        state = self.db[STATE].find_one({"_id": ACTIVE_ID}) or {}
        history = list(state.get("history", []))
        while history:
            previous = history.pop(0)
            if self.db[MODELS].find_one({"_id": previous}, {"_id": 1}) is not None:
                self.db[STATE].replace_one(
                    {"_id": ACTIVE_ID},
                    {"_id": ACTIVE_ID, "version": previous, "history": history, "changed_at": utcnow()},
                    upsert=True,
                )
                log.info("spam model rolled back", extra={"version": previous, "from": state.get("version")})
                return previous
        raise ModelNotFound("no earlier active version to roll back to")

    # --- reading ------------------------------------------------------------------------------------
    def active_version(self) -> str | None:
        """The active version, or None before the first activation."""
        state = self.db[STATE].find_one({"_id": ACTIVE_ID}, {"version": 1})
        return state.get("version") if state else None

    def versions(self, limit: int = 50) -> list[dict[str, Any]]:
        """Version documents, newest first, each with an `active` flag."""
        active = self.active_version()
        documents = list(
            self.db[MODELS].find({}, {"metadata.grid": 0}).sort("created_at", DESCENDING).limit(limit)
        )
        for document in documents:
            document["active"] = document["_id"] == active
        return documents

    def load(self, version: str) -> SpamModel:
        """The model of `version`, from the local cache or else the database."""
        cached = self.cache_dir / f"{version}.npz"
        if cached.is_file():
            return SpamModel.from_bytes(cached.read_bytes())
        try:
            data = self.blobs.get(version)
        except BlobNotFound:
            raise ModelNotFound(version) from None
        self._cache(version, data)
        return SpamModel.from_bytes(data)

    def load_active(self) -> SpamModel:
        """The active model; raises ModelNotFound when none is active."""
        version = self.active_version()
        if version is None:
            raise ModelNotFound("no active spam model: run `make model` or `python -m spam.admin activate`")
        return self.load(version)

    def _cache(self, version: str, data: bytes) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            path = self.cache_dir / f"{version}.npz"
            if not path.exists():
                temporary = path.with_suffix(".tmp")
                temporary.write_bytes(data)
                temporary.replace(path)
        except OSError:  # a read-only container still works, just without the cache
            log.warning("cannot cache spam model locally", extra={"version": version})
