"""scan and delivery as real processes on the real broker, clamd and database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.pipeline import EventTap, purge_pipeline_queues, running_stages, store_raw

TESTFILES = Path("/usr/share/clamav-testfiles")
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def message(
    subject: str, body: bytes = b"Bonjour,\r\nvoici le compte rendu.\r\n", extra: bytes = b""
) -> bytes:
    return (
        b"From: Camille Martin <camille.martin@ac-montpellier.fr>\r\n"
        b"To: Louis Garcia <louis.garcia@ac-montpellier.fr>\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
        b"Message-ID: <"
        + subject.replace(" ", "-").encode()
        + b"@ac-montpellier.fr>\r\n"
        + extra
        + b"\r\n"
        + body
    )


def received(message_id: str, recipients: list[str], origin: str = "mx", **extra) -> dict:
    return {
        "message_id": message_id,
        "sender": "camille.martin@ac-montpellier.fr",
        "recipients": recipients,
        "size": 100,
        "origin": origin,
        **extra,
    }


@pytest.fixture
def stages(database, tmp_path):
    purge_pipeline_queues()
    with running_stages(["scan", "delivery"], database.name, tmp_path, EVENT_RETRY_DELAYS="1") as procs:
        yield procs


@pytest.fixture
def scanned_tap():
    tap = EventTap("mail.scanned")
    yield tap
    tap.close()


def test_clean_mail_is_scanned_and_passed_to_the_spam_stage(stages, database, publisher, scanned_tap):
    message_id = store_raw(database, message("Compte rendu"))
    publisher.publish("mail.received", received(message_id, ["louis.garcia@ac-montpellier.fr"]))

    event = wait_until(scanned_tap.get, what="mail.scanned")
    assert event["payload"]["message_id"] == message_id
    assert event["payload"]["scanner"].startswith("ClamAV")
    assert database.scan_verdicts.find_one({"_id": message_id})["verdict"] == "clean"


def test_scan_talks_to_clamd_over_its_local_socket(database, publisher, scanned_tap, tmp_path):
    """CLAMD_SOCKET, as `make run` sets it for its own clamd: the same verdicts over the local socket."""
    from common.config import get_settings

    local = get_settings().local_clamd_socket
    if not local.exists():
        pytest.skip("clamd here is not the one scripts/stack.py starts (no local socket)")
    purge_pipeline_queues()
    # A TCP port nothing listens on: only the local socket can give verdicts.
    with running_stages(
        ["scan"], database.name, tmp_path, EVENT_RETRY_DELAYS="1", CLAMD_SOCKET=str(local), CLAMD_PORT="9"
    ):
        clean = store_raw(database, message("Compte rendu"))
        infected = store_raw(database, message("Facture", EICAR + b"\r\n"))
        for message_id in (clean, infected):
            publisher.publish("mail.received", received(message_id, ["louis.garcia@ac-montpellier.fr"]))
        event = wait_until(scanned_tap.get, what="mail.scanned")
        assert event["payload"]["message_id"] == clean
        verdict = wait_until(lambda: database.scan_verdicts.find_one({"_id": infected}), what="a verdict")
        assert verdict["verdict"] == "infected"
        assert database.scan_verdicts.find_one({"_id": clean})["verdict"] == "clean"


@pytest.mark.parametrize("payload", ["eicar", "clam.exe"])
def test_infected_mail_lands_in_quarantine_and_never_in_the_inbox(
    stages, database, publisher, scanned_tap, payload
):
    import base64

    data = EICAR if payload == "eicar" else (TESTFILES / "clam.exe").read_bytes()
    body = (
        b"--b\r\nContent-Type: text/plain\r\n\r\nVoir la piece jointe.\r\n--b\r\n"
        b'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="facture.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )
    raw = message("Facture", body, b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n')
    message_id = store_raw(database, raw)
    rcpts = ["louis.garcia@ac-montpellier.fr", "ines.bernard@ac-montpellier.fr"]
    publisher.publish("mail.received", received(message_id, rcpts))

    entries = wait_until(
        lambda: (
            (found := list(database.mailbox_entries.find({"message_id": message_id})))
            and len(found) == 2
            and found
        ),
        what="quarantine entries",
    )
    assert {e["folder"] for e in entries} == {"Quarantine"}
    assert all("Webmail.Test" in e["virus"]["signature"] for e in entries)
    assert entries[0]["attachments"][0]["filename"] == "facture.exe"
    assert database.scan_verdicts.find_one({"_id": message_id})["verdict"] == "infected"
    assert scanned_tap.get() is None


def test_classified_mail_is_filed_once_per_recipient_with_its_list_fields(stages, database, publisher):
    raw = message("Conseil de classe", b"Le conseil de classe de 3e B aura lieu jeudi a 17 h.\r\n")
    message_id = store_raw(database, raw)
    recipients = [f"prof{i}@ac-montpellier.fr" for i in range(50)] + ["ami@exemple.org"]
    event = {**received(message_id, recipients), "verdict": "ham", "score": 0.01, "model_version": "t"}
    event.pop("size")
    first = publisher.publish("mail.classified", event)
    wait_until(lambda: database.mailbox_entries.count_documents({"message_id": message_id}) == 50, what="50")
    # The same event again (a redelivery) changes nothing.
    from common.events import Envelope

    publisher.publish_envelope(Envelope.from_wire(first.to_json()))
    publisher.publish("mail.classified", event)

    entry = database.mailbox_entries.find_one(
        {"message_id": message_id, "mailbox": "prof7@ac-montpellier.fr"}
    )
    assert entry["folder"] == "INBOX"
    assert entry["subject"] == "Conseil de classe"
    assert entry["from"] == {"name": "Camille Martin", "address": "camille.martin@ac-montpellier.fr"}
    assert entry["snippet"].startswith("Le conseil de classe de 3e B")
    assert entry["flags"]["seen"] is False
    assert entry["size"] == len(raw)
    # An MX message with an outside recipient is not relayed (ingest refuses that at RCPT anyway).
    assert database.outbound.count_documents({}) == 0
    import time

    time.sleep(2)
    assert database.mailbox_entries.count_documents({"message_id": message_id}) == 50
    assert database["blobs.files"].count_documents({}) == 1


def test_spam_goes_to_junk_and_a_submission_gets_a_sent_copy_and_an_outbound_entry(
    stages, database, publisher
):
    message_id = store_raw(database, message("Offre exceptionnelle"))
    event = {
        **received(
            message_id,
            ["louis.garcia@ac-montpellier.fr", "parent@exemple.org"],
            origin="submission",
            authenticated_account="camille.martin@ac-montpellier.fr",
        ),
        "verdict": "spam",
        "score": 0.99,
        "model_version": "t",
        "reasons": ["Lien vers une adresse IP"],
    }
    event.pop("size")
    publisher.publish("mail.classified", event)

    wait_until(
        lambda: database.mailbox_entries.count_documents({"message_id": message_id}) == 2, what="entries"
    )
    folders = {e["mailbox"]: e["folder"] for e in database.mailbox_entries.find({"message_id": message_id})}
    assert folders == {"louis.garcia@ac-montpellier.fr": "Junk", "camille.martin@ac-montpellier.fr": "Sent"}
    junk = database.mailbox_entries.find_one({"mailbox": "louis.garcia@ac-montpellier.fr"})
    assert junk["spam"]["reasons"] == ["Lien vers une adresse IP"]
    outbound = wait_until(lambda: database.outbound.find_one({"message_id": message_id}), what="outbound")
    assert (outbound["recipient"], outbound["state"]) == ("parent@exemple.org", "pending")


def test_scan_fails_closed_while_clamd_is_down_and_resumes_when_it_returns(
    database, publisher, scanned_tap, tmp_path
):
    """No verdict, no delivery: mail waits (retried with back-off) until a clamd answers."""
    import re
    import subprocess
    import time

    from common.config import get_settings
    from tests.helpers import free_port

    purge_pipeline_queues()
    port = free_port()
    with running_stages(
        ["scan"],
        database.name,
        tmp_path,
        healthy=False,
        EVENT_RETRY_DELAYS="1",
        SCAN_MAX_ATTEMPTS="60",
        CLAMD_PORT=str(port),
    ):
        message_id = store_raw(database, message("Pendant la panne"))
        publisher.publish("mail.received", received(message_id, ["louis.garcia@ac-montpellier.fr"]))
        time.sleep(4)
        assert scanned_tap.get() is None
        assert database.scan_verdicts.find_one({"_id": message_id}) is None

        # A second clamd, on the port scan was told to use, with the project's configuration.
        conf = (get_settings().state_path / "data" / "clamav" / "clamd.conf").read_text()
        conf = re.sub(r"^TCPSocket .*$", f"TCPSocket {port}", conf, flags=re.M)
        conf = re.sub(r"^LocalSocket .*$", f"LocalSocket {tmp_path / 'clamd.sock'}", conf, flags=re.M)
        (tmp_path / "clamd.conf").write_text(conf)
        clamd = subprocess.Popen(
            ["clamd", f"--config-file={tmp_path / 'clamd.conf'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            event = wait_until(scanned_tap.get, timeout=60, what="mail.scanned after clamd returned")
        finally:
            clamd.terminate()
            clamd.wait(10)
        assert event["payload"]["message_id"] == message_id


def test_stages_expose_the_depth_of_their_queues(stages, database):
    import urllib.request

    port = stages["scan"].health_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'bus_queue_depth{kind="work",queue="scan.mail.received"}' in text
    assert 'bus_queue_depth{kind="dead",queue="scan.mail.received.dead"}' in text
    assert 'bus_queue_depth{kind="retry",queue="scan.mail.received.retry.1s"}' in text


def test_an_event_whose_raw_message_is_gone_is_dead_lettered_at_once(
    stages, database, publisher, scanned_tap
):
    from common import deadletters

    envelope = publisher.publish("mail.received", received("f" * 32, ["louis.garcia@ac-montpellier.fr"]))
    letters = wait_until(lambda: deadletters.show("scan.mail.received"), timeout=20, what="a dead letter")
    assert [letter.event_id for letter in letters] == [envelope.event_id]
    assert "BlobNotFound" in letters[0].reason
    assert letters[0].attempts == 1  # no retry: the message is gone for good
    assert scanned_tap.get() is None


def test_a_senders_retry_after_a_lost_250_is_filed_once(stages, database, publisher):
    """Same Message-ID header and envelope sender, two stored copies: one entry per mailbox."""
    raw = message("Convocation")
    first, second = store_raw(database, raw), store_raw(database, raw)
    for message_id in (first, second):
        event = {**received(message_id, ["louis.garcia@ac-montpellier.fr"]), "verdict": "ham", "score": 0.1}
        event.pop("size")
        publisher.publish("mail.classified", {**event, "model_version": "t"})
    wait_until(
        lambda: database.mailbox_entries.count_documents({"mailbox": "louis.garcia@ac-montpellier.fr"}) >= 1
    )
    import time

    time.sleep(2)
    assert database.mailbox_entries.count_documents({"mailbox": "louis.garcia@ac-montpellier.fr"}) == 1
    # Without a Message-ID header, two copies are two messages.
    bare = b"From: a@exemple.org\r\nSubject: sans identifiant\r\n\r\ncorps\r\n"
    for message_id in (store_raw(database, bare), store_raw(database, bare)):
        event = {**received(message_id, ["ines.bernard@ac-montpellier.fr"]), "verdict": "ham", "score": 0.1}
        event.pop("size")
        publisher.publish("mail.classified", {**event, "model_version": "t"})
    wait_until(
        lambda: database.mailbox_entries.count_documents({"mailbox": "ines.bernard@ac-montpellier.fr"}) == 2
    )
