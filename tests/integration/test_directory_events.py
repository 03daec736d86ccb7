"""Integration test of the directory's events on the real broker: a password change and a reset request
publish `account.password_changed` and `account.reset_requested` through `common.bus`, confirmed and
routed, with the payloads docs/events.md describes."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection, Queue

from common.config import get_settings
from common.topology import EVENTS_EXCHANGE
from directory.notifier import EventNotifier
from directory.testing import TEST_ESTABLISHMENTS, DirectoryHarness, make_person
from tests.pipeline import QueueEvents

pytestmark = pytest.mark.integration


@pytest.fixture
def account_events():
    """A private queue bound to every account.* event, deleted afterwards."""
    with Connection(get_settings().amqp_url) as connection:
        channel = connection.channel()
        queue = Queue(
            f"test.directory.{uuid.uuid4().hex[:8]}",
            EVENTS_EXCHANGE,
            routing_key="account.*",
            exclusive=True,
            auto_delete=True,
        )
        bound = queue(channel)
        EVENTS_EXCHANGE(channel).declare()
        bound.declare()

        events = QueueEvents(channel, bound.name)

        def drain(expected: int) -> list[dict]:
            import time

            found, deadline = [], time.monotonic() + 10
            while len(found) < expected and time.monotonic() < deadline:
                envelopes = events.take()  # one envelope, or a batch's
                if envelopes is None:
                    time.sleep(0.05)
                    continue
                found.extend(envelopes)
            return found

        yield drain
        channel.close()


def test_events_are_published_on_the_bus(database, account_events):
    with DirectoryHarness(database, notifier=EventNotifier()) as h:
        h.directory.load_establishments(TEST_ESTABLISHMENTS)
        person = make_person(recovery_address="camille.secours@example.org")
        _, _, account = h.client.create_account(person)
        assert h.client.change_password(account.address, person.numen, "Tr0ub4dour&Garrigue").ok
        h.client.request_password_reset(
            identifier=account.address, numen=person.numen, birth_date=person.birth_date
        )
        events = account_events(2)
        assert not list(h.directory.audit_log.find({"event": "notify.failed"}))
    by_type = {e["type"]: e for e in events}
    changed = by_type["account.password_changed"]
    assert changed["source"] == "directory"
    assert changed["payload"]["account_id"] == account.account_id
    assert changed["payload"]["reason"] == "change" and changed["payload"]["address"] == account.address
    reset = by_type["account.reset_requested"]["payload"]
    assert reset["recovery_address"] == "camille.secours@example.org"
    assert reset["reset_url"].startswith(get_settings().public_url + "/")
    assert reset["expires_at"] and reset["display_name"] == "Camille MARTIN"
