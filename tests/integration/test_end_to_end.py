"""The whole mail path with real processes: SMTP clients → ingest → scan → spam → delivery → mailboxes.

Every component runs as its own process against the real RabbitMQ, clamd and database: the directory
(gRPC), ingest (SMTP), scan, spam, delivery and notify. Mail is sent with smtplib and Debian's swaks over
sockets; what the tests check is what a user would find in their folders.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

from common.config import get_settings
from spam.testing import corpus_or_skip
from tests.helpers import wait_until
from tests.platform import running_platform

DOMAIN = get_settings().mail_domain
TESTFILES = Path("/usr/share/clamav-testfiles")
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PASSWORD = "Rentree-Scolaire-2026!"
PEOPLE = [("Martin", "Camille"), ("Garcia", "Louis"), ("Bernard", "Inès")]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Every service running on a database of its own, with three activated staff accounts."""
    with running_platform(tmp_path_factory.mktemp("e2e"), PEOPLE, PASSWORD) as running:
        yield running


def entries(db, message_id_header: str) -> dict[str, str]:
    return {
        e["mailbox"]: e["folder"] for e in db.mailbox_entries.find({"message_id_header": message_id_header})
    }


def send_mx(platform, raw: bytes, sender: str, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", platform["mx"], timeout=30) as smtp:
        smtp.sendmail(sender, recipients, raw)


def mime(
    subject: str,
    body: str = "Bonjour,\r\nvoici le compte rendu.\r\n",
    attachment: tuple[str, bytes] | None = None,
):
    message_id = f"<{uuid.uuid4().hex}@exemple.org>"
    head = (
        f"From: Dominique Durand <dominique.durand@exemple.org>\r\nTo: staff@{DOMAIN}\r\n"
        f"Subject: {subject}\r\nMessage-ID: {message_id}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\n"
    )
    if attachment is None:
        return message_id, (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()
    name, data = attachment
    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return message_id, (
        head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        f'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--b--\r\n"
    ).encode()


def test_a_clean_message_lands_in_the_inbox_with_its_fields(platform):
    louis = platform["people"]["Louis"]
    message_id, raw = mime("Conseil de classe de 3e B", "Le conseil aura lieu jeudi à 17 h.\r\n")
    send_mx(platform, raw, "dominique.durand@exemple.org", [louis])

    assert wait_until(lambda: entries(platform["db"], message_id), timeout=60) == {louis: "INBOX"}
    entry = platform["db"].mailbox_entries.find_one({"message_id_header": message_id})
    assert entry["subject"] == "Conseil de classe de 3e B"
    assert entry["from"]["address"] == "dominique.durand@exemple.org"
    assert entry["snippet"].startswith("Le conseil aura lieu jeudi")
    assert entry["flags"]["seen"] is False
    raw_stored = platform["db"]["blobs.files"].find_one({"_id": entry["message_id"]})
    assert raw_stored is not None


@pytest.mark.parametrize("payload", ["eicar", "clam.exe"])
def test_viruses_land_in_quarantine_never_in_the_inbox_and_the_user_is_told(platform, payload):
    ines = platform["people"]["Inès"]
    data = EICAR if payload == "eicar" else (TESTFILES / "clam.exe").read_bytes()
    message_id, raw = mime(f"Facture {payload}", attachment=("facture.exe", data))
    send_mx(platform, raw, "dominique.durand@exemple.org", [ines])

    assert wait_until(lambda: entries(platform["db"], message_id), timeout=60) == {ines: "Quarantine"}
    from common.db import BlobStore

    blobs = BlobStore(platform["db"])

    def notice():
        for entry in platform["db"].mailbox_entries.find(
            {"mailbox": ines, "folder": "INBOX", "subject": "Un message a été mis en quarantaine"}
        ):
            if f"Facture {payload}".encode() in blobs.get(entry["message_id"]):
                return entry
        return None

    notice = wait_until(notice, timeout=60, what="the quarantine notice, delivered through the MX")
    assert notice["from"]["address"].startswith("ne-pas-repondre@")


def test_viruses_sent_with_swaks_are_quarantined_too(platform, tmp_path):
    louis = platform["people"]["Louis"]
    attachment = tmp_path / "programme.exe"
    attachment.write_bytes((TESTFILES / "clam.exe").read_bytes())
    header = f"<{uuid.uuid4().hex}@swaks.test>"
    result = subprocess.run(
        [
            "swaks",
            "--server",
            "127.0.0.1",
            "--port",
            str(platform["mx"]),
            "--from",
            "outside@exemple.org",
            "--to",
            louis,
            "--header",
            f"Message-Id: {header}",
            "--header",
            "Subject: Programme",
            "--attach",
            str(attachment),
            "--attach-type",
            "application/octet-stream",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert wait_until(lambda: entries(platform["db"], header), timeout=60) == {louis: "Quarantine"}


def test_gtube_and_corpus_spam_land_in_junk(platform):
    from spam.service import GTUBE

    louis = platform["people"]["Louis"]
    gtube_id, gtube = mime("Offre", "Bonjour\r\n" + GTUBE.decode() + "\r\n")
    send_mx(platform, gtube, "promo@exemple.biz", [louis])
    root = corpus_or_skip()
    spam_raw = sorted((root / "data" / "spam-2").glob("*.txt"))[10].read_bytes()
    spam_raw = spam_raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    spam_id = f"<{uuid.uuid4().hex}@spam.test>"
    spam_raw = f"Message-ID: {spam_id}\r\n".encode() + spam_raw
    send_mx(platform, spam_raw, "promo@exemple.biz", [louis])

    assert wait_until(lambda: entries(platform["db"], gtube_id), timeout=60) == {louis: "Junk"}
    assert wait_until(lambda: entries(platform["db"], spam_id), timeout=60) == {louis: "Junk"}


def test_an_unknown_recipient_is_refused_at_rcpt(platform):
    with smtplib.SMTP("127.0.0.1", platform["mx"], timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("dominique.durand@exemple.org")
        code, text = smtp.rcpt(f"personne.inconnue@{DOMAIN}")
    assert code == 550
    assert text.startswith(b"5.1.1")


def test_relaying_for_an_unauthenticated_peer_is_refused(platform):
    with smtplib.SMTP("127.0.0.1", platform["mx"], timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("dominique.durand@exemple.org")
        code, text = smtp.rcpt("quelquun@ailleurs.org")
    assert code == 550
    assert text.startswith(b"5.7.1")


def test_an_authenticated_colleague_sends_outside_and_keeps_a_copy_in_sent(platform):
    camille = platform["people"]["Camille"]
    louis = platform["people"]["Louis"]
    message_id = f"<{uuid.uuid4().hex}@{DOMAIN}>"
    raw = (
        f"From: Camille Martin <{camille}>\r\nTo: parent@exemple.org, {louis}\r\nSubject: Sortie scolaire\r\n"
        f"Message-ID: {message_id}\r\n\r\nLa sortie aura lieu mardi.\r\n"
    ).encode()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", platform["submission"], timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.login(camille, PASSWORD)
        smtp.sendmail(camille, ["parent@exemple.org", louis], raw)

    assert wait_until(lambda: entries(platform["db"], message_id), timeout=60) == {
        louis: "INBOX",
        camille: "Sent",
    }
    relayed = wait_until(
        lambda: [m for m in platform["smarthost"].received if message_id.encode() in m.data], timeout=60
    )
    assert relayed[0].recipients == ["parent@exemple.org"]
