"""ingest over the real directory: `DirectoryRecipients` on the real gRPC client and server
(`directory.testing.DirectoryHarness`), so RCPT codes and submission AUTH are checked end to end.
"""

# The fixtures come from tests/smtp_helpers.py; ruff sees the test arguments as redefining them.
# ruff: noqa: F811

from __future__ import annotations

import smtplib

import pytest

from common.db import BlobStore
from directory.testing import TEST_ESTABLISHMENTS, DirectoryHarness, make_person
from ingest.recipients import DirectoryRecipients
from tests.smtp_helpers import (  # noqa: F401 - fixtures
    DOMAIN,
    client_tls_context,
    events,
    publisher,
    running_ingest,
    tls_folder,
)

PASSWORD = "Tr0ub4dour&Garrigue"


@pytest.fixture
def accounts(database):
    """A real directory with an active account (password set, one alias), a suspended, a deleted one,
    and one still awaiting its first (NUMEN) login."""
    with DirectoryHarness(database) as harness:
        harness.directory.load_establishments(TEST_ESTABLISHMENTS)
        client = harness.client
        camille = make_person()
        client.create_account(camille)
        assert client.change_password("camille.martin", camille.numen, PASSWORD, "127.0.0.1").ok
        client.add_alias("camille.martin", "c.martin")
        _, _, suspended = client.create_account(make_person(first_name="Paul"))
        _, _, deleted = client.create_account(make_person(first_name="Zoé"))
        newcomer = make_person(first_name="Inès")
        client.create_account(newcomer)
        client.admin("suspend", suspended.address)
        client.admin("delete", deleted.address)
        yield harness, newcomer


@pytest.fixture
def ingest(accounts, database, publisher, tls_folder, events):
    harness, _ = accounts
    with running_ingest(
        directory=DirectoryRecipients(harness.client, DOMAIN),
        blobs=BlobStore(database),
        publisher=publisher,
        tls_folder=tls_folder,
    ) as thread:
        yield thread


def test_rcpt_codes_come_from_the_real_directory(ingest, events):
    with smtplib.SMTP("127.0.0.1", ingest.mx_port, timeout=10) as client:
        client.ehlo("mail.example.org")
        client.mail("parent@example.org")
        assert client.rcpt(f"personne.inconnue@{DOMAIN}")[0] == 550
        assert client.rcpt(f"paul.martin@{DOMAIN}")[0] == 450
        assert client.rcpt(f"zoe.martin@{DOMAIN}")[0] == 550
        assert client.rcpt(f"C.Martin@{DOMAIN}")[0] == 250  # alias, any case
        assert client.data(b"Subject: directory\r\n\r\nhello\r\n")[0] == 250
    assert events.get()["payload"]["recipients"] == [f"camille.martin@{DOMAIN}"]


def test_submission_auth_against_the_real_directory(ingest, accounts, events):
    _, newcomer = accounts
    with smtplib.SMTP("127.0.0.1", ingest.submission_port, timeout=10) as client:
        client.starttls(context=client_tls_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("ines.martin", newcomer.numen)  # the NUMEN is for the webmail's first login only
        client.login("camille.martin", PASSWORD)
        assert (
            client.sendmail(f"c.martin@{DOMAIN}", ["collegue@example.org"], b"Subject: x\r\n\r\ny\r\n") == {}
        )
    payload = events.get()["payload"]
    assert payload["authenticated_account"] == f"camille.martin@{DOMAIN}"
    assert payload["recipients"] == ["collegue@example.org"]
