"""Mail leaving the academy, bounces and quotas: delivery and notify as processes, real SMTP peers."""

from __future__ import annotations

import pytest

from tests.helpers import wait_until
from tests.pipeline import purge_pipeline_queues, running_stages, store_raw

AUTHOR = "camille.martin@ac-montpellier.fr"
RAW = (
    b"From: Camille Martin <camille.martin@ac-montpellier.fr>\r\n"
    b"To: parent@exemple.org\r\n"
    b"Subject: Sortie scolaire\r\n"
    b"Message-ID: <sortie@ac-montpellier.fr>\r\n"
    b"\r\n"
    b"Bonjour, la sortie aura lieu mardi.\r\n"
)


@pytest.fixture
def stages(database, smtp_peers, tmp_path):
    mx, smarthost = smtp_peers
    purge_pipeline_queues()
    with running_stages(
        ["delivery", "notify"],
        database.name,
        tmp_path,
        EVENT_RETRY_DELAYS="1",
        SMTP_MX_PORT=str(mx.port),
        SMARTHOST=f"127.0.0.1:{smarthost.port}",
        RELAY_POLL_SECONDS="0.5",
        RELAY_RETRY_DELAYS="1",
    ) as procs:
        yield procs


def submission(
    message_id: str, recipients: list[str], sender: str = AUTHOR, origin: str = "submission"
) -> dict:
    return {
        "message_id": message_id,
        "sender": sender,
        "recipients": recipients,
        "origin": origin,
        "authenticated_account": AUTHOR,
        "verdict": "ham",
        "score": 0.02,
        "model_version": "t",
    }


def test_an_external_recipient_gets_the_message_through_the_smarthost(
    stages, smtp_peers, database, publisher
):
    _, smarthost = smtp_peers
    message_id = store_raw(database, RAW)
    publisher.publish(
        "mail.classified", submission(message_id, ["parent@exemple.org", "louis.garcia@ac-montpellier.fr"])
    )

    wait_until(lambda: smarthost.received, what="the relayed message")
    relayed = smarthost.received[0]
    assert relayed.recipients == ["parent@exemple.org"]
    assert relayed.sender == AUTHOR
    assert relayed.data.replace(b"\r\n", b"\n") == RAW.replace(b"\r\n", b"\n")
    outbound = wait_until(lambda: database.outbound.find_one({"message_id": message_id, "state": "relayed"}))
    assert outbound["attempts"] == 1
    assert database.mailbox_entries.count_documents({"message_id": message_id}) == 2  # INBOX + Sent


def test_a_refused_recipient_brings_a_french_delivery_report_to_the_sender(
    stages, smtp_peers, database, publisher
):
    mx, smarthost = smtp_peers
    smarthost.handler.refuse_with = "550 5.1.1 No such user here"
    message_id = store_raw(database, RAW)
    publisher.publish("mail.classified", submission(message_id, ["inconnu@exemple.org"]))

    wait_until(lambda: mx.received, timeout=30, what="the delivery report")
    report = mx.received[0]
    assert report.recipients == [AUTHOR]
    assert report.sender == "<>"
    assert report.message.get_content_type() == "multipart/report"
    text = report.message.get_body(("plain",)).get_content()
    assert "n'a pas pu être remis à inconnu@exemple.org" in text
    assert "l'adresse du destinataire n'existe pas" in text
    assert "« Sortie scolaire »" in text
    status = next(p for p in report.message.walk() if p.get_content_type() == "message/delivery-status")
    assert "Status: 5.1.1" in status.as_string()
    assert database.outbound.find_one({"message_id": message_id})["state"] == "failed"


def test_a_full_mailbox_refuses_new_mail_and_the_sender_is_told(stages, smtp_peers, database, publisher):
    _, smarthost = smtp_peers
    database.mailboxes.insert_one(
        {"_id": "louis.garcia@ac-montpellier.fr", "used_bytes": 990, "quota_bytes": 1000}
    )
    message_id = store_raw(database, RAW)
    event = submission(
        message_id,
        ["louis.garcia@ac-montpellier.fr", "ines.bernard@ac-montpellier.fr"],
        sender="parent@exemple.org",
        origin="mx",
    )
    event.pop("authenticated_account")
    publisher.publish("mail.classified", event)

    wait_until(lambda: smarthost.received, timeout=30, what="the report to the outside sender")
    report = smarthost.received[0]
    assert report.recipients == ["parent@exemple.org"]
    assert (
        "la boîte aux lettres du destinataire est pleine" in report.message.get_body(("plain",)).get_content()
    )
    mailboxes = {e["mailbox"] for e in database.mailbox_entries.find({"message_id": message_id})}
    assert mailboxes == {"ines.bernard@ac-montpellier.fr"}
    assert database.mailboxes.find_one({"_id": "ines.bernard@ac-montpellier.fr"})["used_bytes"] == len(RAW)
