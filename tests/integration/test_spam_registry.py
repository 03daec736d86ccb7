"""Spam model versions in the real database: publish, list, activate, roll back, reload in workers."""

from __future__ import annotations

import pytest

from spam.classifier import SpamClassifier
from spam.exceptions import ModelNotFound
from spam.registry import ModelRegistry
from spam.testing import make_message, small_model

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(database, tmp_path):
    registry = ModelRegistry(database, cache_dir=tmp_path / "models")
    registry.ensure_indexes()
    return registry


def _variant(version: str):
    model = small_model()
    model.version = version
    model.intercept += 0.5 if version.endswith("b") else 0.0
    return model


def test_publish_activate_and_rollback(registry):
    with pytest.raises(ModelNotFound):
        registry.load_active()
    for version in ("v-a", "v-b", "v-c"):
        registry.publish(_variant(version))
    registry.activate("v-a")
    registry.activate("v-b")
    registry.activate("v-c")
    assert registry.active_version() == "v-c"
    listed = {document["_id"]: document["active"] for document in registry.versions()}
    assert listed == {"v-a": False, "v-b": False, "v-c": True}
    assert registry.rollback() == "v-b"
    assert registry.rollback() == "v-a"
    with pytest.raises(ModelNotFound):
        registry.rollback()
    with pytest.raises(ModelNotFound):
        registry.activate("unknown")


def test_artifact_comes_from_the_database_when_not_cached(database, registry, tmp_path):
    model = _variant("v-db")
    registry.publish(model)
    other_worker = ModelRegistry(database, cache_dir=tmp_path / "other")
    loaded = other_worker.load("v-db")
    raw = make_message()
    assert loaded.score(raw) == model.score(raw)
    assert (tmp_path / "other" / "v-db.npz").is_file()


def test_workers_reload_the_active_version(registry):
    registry.publish(_variant("v-a"))
    registry.publish(_variant("v-b"))
    registry.activate("v-a")
    now = [0.0]
    classifier = SpamClassifier(registry=registry, poll_seconds=30, clock=lambda: now[0])
    assert classifier.classify(make_message()).model_version == "v-a"
    registry.activate("v-b")
    assert classifier.classify(make_message()).model_version == "v-a"  # not polled yet
    now[0] = 31.0
    assert classifier.classify(make_message()).model_version == "v-b"


def test_a_version_is_immutable(registry):
    model = _variant("v-once")
    registry.publish(model)
    first = registry.versions()[0]
    model.intercept += 3.0
    registry.publish(model)  # same version name: ignored
    assert registry.versions()[0]["created_at"] == first["created_at"]
    assert registry.load("v-once").intercept == pytest.approx(model.intercept - 3.0)
