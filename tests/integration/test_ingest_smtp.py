"""ingest over real sockets: real SMTP clients (smtplib, swaks), the real database and RabbitMQ.

The directory is the in-memory `StaticDirectory`, injected into the real servers, so that suspended and
deleted accounts exist on demand; `test_ingest_directory.py` checks the adapter over the real directory.
"""

# The fixtures come from tests/smtp_helpers.py; ruff sees the test arguments as redefining them.
# ruff: noqa: F811

from __future__ import annotations

import email
import email.policy
import smtplib
import subprocess
from email.message import EmailMessage

import pytest

from common.db import BlobStore
from ingest import codes
from tests.smtp_helpers import (  # noqa: F401 - fixtures
    CAMILLE,
    CAMILLE_PASSWORD,
    DOMAIN,
    RawClient,
    blobs,
    client_tls_context,
    directory,
    events,
    ingest,
    limits,
    publisher,
    queued_id,
    stored_blob_ids,
    tls_folder,
)


def message(subject: str = "Réunion de rentrée", to: str = CAMILLE) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "parent@example.org"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<rentree-2026@example.org>"
    msg.set_content("Bonjour,\nla réunion aura lieu jeudi.\n")
    return msg


def wire(msg: EmailMessage) -> bytes:
    """The message with CRLF line endings: smtplib sends bytes as they are, and ingest refuses bare LF."""
    return msg.as_bytes(policy=email.policy.SMTP)


def test_a_clean_message_is_stored_once_with_trace_headers_and_announced(ingest, database, events):
    with smtplib.SMTP("127.0.0.1", ingest.mx_port, timeout=10) as client:
        client.ehlo("mail.example.org")
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8") and client.has_extn("size")
        assert not client.has_extn("auth")  # no logins on the MX port
        client.mail("parent@example.org")
        client.rcpt(f"c.martin@{DOMAIN}")  # an alias
        code, text = client.data(wire(message()))
    assert code == 250
    message_id = queued_id(text.decode())

    event = events.get()
    assert event["type"] == "mail.received"
    assert event["source"] == "ingest"
    payload = event["payload"]
    assert payload["message_id"] == message_id
    assert payload["sender"] == "parent@example.org"
    assert payload["recipients"] == [CAMILLE]  # resolved to the mailbox
    assert payload["origin"] == "mx"
    assert payload["client_address"] == "127.0.0.1"
    assert payload["message_id_header"] == "<rentree-2026@example.org>"
    assert payload["received_at"].endswith("Z")
    assert "authenticated_account" not in payload

    assert stored_blob_ids(database) == [message_id]
    raw = BlobStore(database).get(message_id)
    assert payload["size"] == len(raw)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF throughout
    lines = raw.split(b"\r\n")
    assert lines[0].startswith(b"Received: from mail.example.org (")
    assert b"[127.0.0.1])" in lines[0]
    assert lines[2] == b"\twith ESMTP id " + message_id.encode()
    assert lines[3].startswith(f"\tfor <c.martin@{DOMAIN}>; ".encode())
    assert lines[4] == f"X-Trace-Id: {event['trace_id']}".encode()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Réunion de rentrée"
    assert events.get(timeout=0.3) is None  # exactly one event


def test_a_bounce_with_the_null_sender_is_accepted(ingest, events):
    with smtplib.SMTP("127.0.0.1", ingest.mx_port, timeout=10) as client:
        client.sendmail("<>", [CAMILLE], wire(message()))
    assert events.get()["payload"]["sender"] == ""


def test_recipients_are_checked_at_rcpt_time(ingest, database, events):
    with smtplib.SMTP("127.0.0.1", ingest.mx_port, timeout=10) as client:
        client.ehlo("mail.example.org")
        client.mail("parent@example.org")
        replies = {
            "unknown": client.rcpt(f"personne.inconnue@{DOMAIN}"),
            "suspended": client.rcpt(f"claude.suspendu@{DOMAIN}"),
            "deleted": client.rcpt(f"alex.supprime@{DOMAIN}"),
            "relay": client.rcpt("someone@example.com"),
            "ok": client.rcpt(CAMILLE),
        }
        code, _ = client.data(wire(message()))
    assert replies["unknown"] == (550, b"5.1.1 No such user here")
    assert replies["suspended"][0] == 450 and replies["suspended"][1].startswith(b"4.2.1")
    assert replies["deleted"][0] == 550 and replies["deleted"][1].startswith(b"5.2.1")
    assert replies["relay"][0] == 550 and replies["relay"][1].startswith(b"5.7.1")
    assert replies["ok"][0] == 250
    assert code == 250
    assert events.get()["payload"]["recipients"] == [CAMILLE]
    assert len(stored_blob_ids(database)) == 1


def test_a_relay_attempt_is_refused_and_nothing_is_stored(ingest, database, events):
    with smtplib.SMTP("127.0.0.1", ingest.mx_port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("spammer@example.net", ["victim@example.com"], b"Subject: x\r\n\r\nspam\r\n")
    assert refused.value.recipients["victim@example.com"][0] == 550
    assert stored_blob_ids(database) == []
    assert events.get(timeout=0.5) is None


def test_a_directory_outage_is_temporary_at_rcpt(ingest, directory):
    directory.fail = True
    with smtplib.SMTP("127.0.0.1", ingest.mx_port, timeout=10) as client:
        client.ehlo("mail.example.org")
        client.mail("parent@example.org")
        code, text = client.rcpt(CAMILLE)
    assert (code, text[:5]) == (451, b"4.4.3")


def test_submission_requires_starttls_then_auth(ingest):
    with smtplib.SMTP("127.0.0.1", ingest.submission_port, timeout=10) as client:
        client.ehlo("laptop")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.mail(CAMILLE) == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert client.docmd("AUTH PLAIN AGZvbwBiYXI=")[0] == 530
        client.starttls(context=client_tls_context())
        client.ehlo("laptop")
        assert "PLAIN" in client.esmtp_features["auth"] and "LOGIN" in client.esmtp_features["auth"]
        assert client.mail(CAMILLE) == (530, b"5.7.0 Authentication required")
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(CAMILLE, "wrong password")
        assert refused.value.smtp_code == 535
        assert refused.value.smtp_error.startswith(b"5.7.8")


def test_an_authenticated_submission_may_send_outside(ingest, database, events):
    with smtplib.SMTP("127.0.0.1", ingest.submission_port, timeout=10) as client:
        client.starttls(context=client_tls_context())
        client.login("camille.martin", CAMILLE_PASSWORD)
        refused = client.sendmail(
            CAMILLE,
            ["ami@example.org", f"dominique.durand@{DOMAIN}"],
            wire(message(to="ami@example.org")),
        )
    assert refused == {}
    payload = events.get()["payload"]
    assert payload["origin"] == "submission"
    assert payload["authenticated_account"] == CAMILLE
    assert payload["recipients"] == ["ami@example.org", f"dominique.durand@{DOMAIN}"]
    raw = BlobStore(database).get(payload["message_id"])
    first = raw.split(b"\r\n\r\n", 1)[0]
    assert b"with ESMTPSA id" in first  # TLS and authenticated (RFC 3848)
    assert b"for <" not in first.split(b"X-Trace-Id")[0]  # two recipients: none named


def test_a_submission_cannot_use_someone_elses_address(ingest):
    with smtplib.SMTP("127.0.0.1", ingest.submission_port, timeout=10) as client:
        client.starttls(context=client_tls_context())
        client.login(CAMILLE, CAMILLE_PASSWORD)
        code, text = client.mail(f"recteur@{DOMAIN}")
    assert code == 553 and text.startswith(b"5.7.1")


def test_a_thousand_recipients_are_stored_once_and_the_next_is_refused(ingest, database, directory, events):
    recipients = [f"agent.{n:04d}@{DOMAIN}" for n in range(1001)]
    directory.mailboxes.update(recipients)
    with smtplib.SMTP("127.0.0.1", ingest.mx_port, timeout=30) as client:
        refused = client.sendmail("rectorat@example.org", recipients, wire(message()))
    assert list(refused) == [recipients[-1]]
    assert refused[recipients[-1]][0] == 452
    assert refused[recipients[-1]][1].startswith(codes.TOO_MANY_RECIPIENTS[4:].encode())

    event = events.get()
    assert event["payload"]["recipients"] == recipients[:1000]
    assert stored_blob_ids(database) == [event["payload"]["message_id"]]
    assert events.get(timeout=0.3) is None


def swaks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["swaks", "--timeout", "20", *args], capture_output=True, text=True, timeout=60)


def test_swaks_delivers_a_clean_message(ingest, database, events):
    result = swaks(
        "--server", "127.0.0.1", "--port", str(ingest.mx_port),
        "--from", "parent@example.org", "--to", CAMILLE,
        "--helo", "swaks.example.org", "--header", "Subject: swaks", "--body", "Bonjour depuis swaks",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 OK: queued as" in result.stdout
    payload = events.get()["payload"]
    raw = BlobStore(database).get(payload["message_id"])
    assert b"Received: from swaks.example.org" in raw
    assert b"Subject: swaks" in raw


def test_swaks_sends_an_attachment_over_authenticated_submission(ingest, database, events, tmp_path):
    attachment = tmp_path / "bulletin.pdf"
    attachment.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 200)
    result = swaks(
        "--server", "127.0.0.1", "--port", str(ingest.submission_port), "--tls",
        "--auth", "PLAIN", "--auth-user", CAMILLE, "--auth-password", CAMILLE_PASSWORD,
        "--from", CAMILLE, "--to", "inspecteur@example.org",
        "--header", "Subject: bulletin", "--body", "Ci-joint le bulletin.",
        "--attach-type", "application/pdf", "--attach-name", "bulletin.pdf", "--attach", f"@{attachment}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    payload = events.get()["payload"]
    assert payload["origin"] == "submission"
    parsed = email.message_from_bytes(BlobStore(database).get(payload["message_id"]))
    parts = [part for part in parsed.walk() if part.get_filename() == "bulletin.pdf"]
    assert parts and parts[0].get_payload(decode=True) == attachment.read_bytes()


def test_swaks_unknown_recipient_is_refused_at_rcpt(ingest, database):
    result = swaks("--server", "127.0.0.1", "--port", str(ingest.mx_port), "--to", f"nobody@{DOMAIN}")
    assert result.returncode != 0
    assert "550 5.1.1" in result.stdout
    assert stored_blob_ids(database) == []


def test_raw_client_sees_enhanced_codes_and_a_clean_quit(ingest):
    client = RawClient(ingest.mx_port)
    assert client.greeting.startswith("220 mx.test.invalid ESMTP")
    assert "250-ENHANCEDSTATUSCODES" in client.command("EHLO raw.example.org")
    assert client.command("DATA").startswith("503 5.5.1")
    assert client.command("QUIT") == "221 2.0.0 Bye"
    client.close()
