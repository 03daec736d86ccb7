"""notify as a real process: live notifications on the broker, notices and reset links over real SMTP."""

from __future__ import annotations

import json

import pytest
from kombu import Connection, Queue

from common.config import get_settings
from common.mailstore import entry_id
from common.topology import LIVE_EXCHANGE
from tests.helpers import wait_until
from tests.pipeline import purge_pipeline_queues, running_stages

MAILBOX = "louis.garcia@ac-montpellier.fr"


@pytest.fixture
def notify(database, smtp_peers, tmp_path):
    mx, smarthost = smtp_peers
    purge_pipeline_queues()
    with running_stages(
        ["notify"],
        database.name,
        tmp_path,
        EVENT_RETRY_DELAYS="1",
        SMTP_MX_PORT=str(mx.port),
        SMARTHOST=f"127.0.0.1:{smarthost.port}",
    ) as procs:
        yield procs


@pytest.fixture
def live():
    """An exclusive queue bound to the mailbox's live notifications, as a webmail process would bind it."""
    with Connection(get_settings().amqp_url) as conn:
        channel = conn.channel()
        queue = Queue(exclusive=True, exchange=LIVE_EXCHANGE, routing_key=MAILBOX, auto_delete=True)(channel)
        LIVE_EXCHANGE(channel).declare()
        queue.declare()
        queue.bind_to(LIVE_EXCHANGE, routing_key=MAILBOX)

        def get():
            message = channel.basic_get(queue.name, no_ack=True)
            return json.loads(message.body) if message else None

        yield get


def test_a_delivered_message_is_announced_live_with_its_list_fields(notify, database, publisher, live):
    """The notification carries what the list shows of the entry, not the folder's unread count: the
    webmail counts that when it relays the notification to a watching browser (test_mailbox_views)."""
    for n in range(2):
        database.mailbox_entries.insert_one(
            {
                "_id": entry_id(f"m{n}", MAILBOX, "rcpt"),
                "mailbox": MAILBOX,
                "folder": "INBOX",
                "subject": f"Message {n}",
                "from": {"name": "Camille Martin", "address": "camille.martin@ac-montpellier.fr"},
                "snippet": "Bonjour",
                "flags": {"seen": False},
            }
        )
    publisher.publish(
        "mail.delivered",
        {
            "message_id": "m1",
            "mailbox": MAILBOX,
            "folder": "INBOX",
            "entry_id": entry_id("m1", MAILBOX, "rcpt"),
        },
    )
    notification = wait_until(live, what="a live notification")
    assert notification["type"] == "new_mail"
    assert (notification["mailbox"], notification["folder"]) == (MAILBOX, "INBOX")
    assert notification["entry_id"] == entry_id("m1", MAILBOX, "rcpt")
    assert notification["subject"] == "Message 1" and notification["snippet"] == "Bonjour"
    assert "unread" not in notification


def test_a_quarantined_message_brings_a_french_notice_through_the_mx(notify, smtp_peers, database, publisher):
    mx, _ = smtp_peers
    database.mailbox_entries.insert_one(
        {
            "_id": entry_id("v1", MAILBOX, "rcpt"),
            "mailbox": MAILBOX,
            "folder": "Quarantine",
            "subject": "Facture impayée",
            "from": {"name": "", "address": "pirate@exemple.org"},
            "virus": {"signature": "Webmail.Test.EICAR.UNOFFICIAL"},
            "flags": {"seen": False},
        }
    )
    payload = {
        "message_id": "v1",
        "mailbox": MAILBOX,
        "folder": "Quarantine",
        "entry_id": entry_id("v1", MAILBOX, "rcpt"),
    }
    first = publisher.publish("mail.delivered", payload)
    wait_until(lambda: mx.received, what="the quarantine notice")
    notice = mx.received[0]
    assert notice.recipients == [MAILBOX]
    assert notice.sender == "<>"  # null reverse path
    assert notice.message["Subject"] == "Un message a été mis en quarantaine"
    assert notice.message["Auto-Submitted"] == "auto-generated"
    body = notice.message.get_content()
    assert "pirate@exemple.org" in body and "Facture impayée" in body and "EICAR" in body

    # The same event delivered again sends nothing more.
    from common.events import Envelope

    publisher.publish_envelope(Envelope.from_wire(first.to_json()))
    import time

    time.sleep(2)
    assert len(mx.received) == 1


def test_a_reset_link_goes_to_the_outside_recovery_address_through_the_smarthost(
    notify, smtp_peers, publisher
):
    mx, smarthost = smtp_peers
    publisher.publish(
        "account.reset_requested",
        {
            "account_id": "a1",
            "recovery_address": "camille.perso@exemple.org",
            "reset_url": "http://127.0.0.1:8080/mot-de-passe/reinitialiser?jeton=SECRET123",
            "expires_at": "2026-11-26T11:00:00Z",
        },
    )
    wait_until(lambda: smarthost.received, what="the reset mail")
    mail = smarthost.received[0]
    assert mail.recipients == ["camille.perso@exemple.org"]
    assert "réinitialisation" in mail.message["Subject"]
    body = mail.message.get_content()
    assert "jeton=SECRET123" in body
    assert "26/11/2026 à 12:00" in body  # Europe/Paris
    assert mx.received == []


def test_a_password_change_leaves_a_notice_in_the_mailbox(notify, smtp_peers, publisher):
    mx, _ = smtp_peers
    publisher.publish(
        "account.password_changed",
        {"account_id": "a1", "address": MAILBOX, "changed_at": "2026-07-01T08:00:00Z", "reason": "reset"},
    )
    wait_until(lambda: mx.received, what="the notice")
    body = mx.received[0].message.get_content()
    assert "mot de passe oublié" in body
    assert "01/07/2026 à 10:00" in body  # summer time


def test_the_live_channel_publishes_again_on_a_new_connection_when_its_own_was_lost(live):
    from notify.service import LiveChannel

    channel = LiveChannel(get_settings().amqp_url)
    try:
        channel.publish(MAILBOX, {"type": "new_mail", "subject": "Premier"})
        assert wait_until(live, what="the first notification") == {"type": "new_mail", "subject": "Premier"}
        channel.connection.connection.sock.close()  # the connection dies under the channel
        channel.publish(MAILBOX, {"type": "new_mail", "subject": "Second"})
        assert wait_until(live, what="the notification after the reconnection") == {
            "type": "new_mail",
            "subject": "Second",
        }
    finally:
        channel.close()
