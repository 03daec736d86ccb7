"""Fixtures shared by unit and integration tests of every service.

Integration tests talk to the real infrastructure that `make test` starts (RabbitMQ, clamd, the database);
each test that writes to the database gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import uuid

import pytest

from common.config import get_settings
from common.db import get_client


@pytest.fixture
def settings():
    """The settings the platform would run with."""
    return get_settings()


@pytest.fixture
def database():
    """A fresh, empty database on the configured server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    client = get_client()
    yield client[name]
    client.drop_database(name)
