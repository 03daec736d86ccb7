"""Integration tests run against the real infrastructure that `make test` starts."""

import pytest

from common.bus import EventPublisher
from tests.smtp_sink import SmtpSink


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def publisher():
    """An event publisher on the real broker, closed after the test."""
    publisher = EventPublisher(source="tests")
    yield publisher
    publisher.close()


@pytest.fixture
def smtp_peers():
    """Two SMTP servers that keep what they receive: (MX stand-in, smarthost)."""
    with SmtpSink() as mx, SmtpSink() as smarthost:
        yield mx, smarthost
