"""Fixtures shared by unit and integration tests of every service.

Integration tests talk to the real infrastructure that `make test` starts (RabbitMQ, clamd, the database);
each test that writes to the database gets a database of its own, dropped afterwards. The whole run uses
a RabbitMQ virtual host of its own (`tests/vhost.py`), so that two runs on one machine, or processes left
behind by an interrupted run, never consume each other's events; `TEST_SHARED_VHOST=1` turns that off.
"""

from __future__ import annotations

import os
import uuid

import pytest

from common.config import get_settings, reset_settings
from common.db import get_client
from tests import vhost

_RUN_VHOST_URL: str | None = None


def pytest_configure(config):
    """Give the run a private virtual host when a broker with the management API answers."""
    global _RUN_VHOST_URL
    if os.environ.get("TEST_SHARED_VHOST") == "1":
        return
    try:
        _RUN_VHOST_URL = vhost.create_vhost(get_settings().amqp_url, "test-run")
    except (OSError, RuntimeError):
        return  # no broker (unit tests only): nothing to isolate
    os.environ["AMQP_URL"] = _RUN_VHOST_URL
    reset_settings()


def pytest_unconfigure(config):
    if _RUN_VHOST_URL:
        vhost.delete_vhost(_RUN_VHOST_URL)


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
