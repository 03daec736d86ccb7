"""webmail.submission against ingest's real submission port: verified STARTTLS, the proxy login, and the
French errors the compose page shows."""

# The fixtures come from tests/smtp_helpers.py; ruff sees the test arguments as redefining them.
# ruff: noqa: F811

from __future__ import annotations

import dataclasses
import email.policy
from email.message import EmailMessage

import pytest

from common.config import get_settings
from tests.helpers import free_port
from tests.smtp_helpers import (  # noqa: F401 - fixtures
    CAMILLE,
    DOMAIN,
    DOMINIQUE,
    blobs,
    directory,
    events,
    publisher,
    tls_folder,
    webmail_ingest,
)
from tests.smtp_helpers import (
    WEBMAIL_SECRET as SECRET,
)
from webmail import submission


def settings_for(webmail_ingest, tls_folder, **overrides):
    values = {
        "smtp_host": "127.0.0.1",
        "smtp_submission_port": webmail_ingest.submission_port,
        "submission_service_secret": SECRET,
        "submission_ca_file": str(tls_folder / "ingest.crt"),
        **overrides,
    }
    return dataclasses.replace(get_settings(), **values)


def message() -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Camille Martin <{CAMILLE}>"
    msg["To"] = DOMINIQUE
    msg["Subject"] = "Depuis le webmail"
    msg.set_content("Bonjour.\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def send(settings, recipients=(DOMINIQUE,)):
    submission.send(settings, account=CAMILLE, sender=CAMILLE, recipients=list(recipients), data=message())


def test_the_webmail_sends_as_the_user(webmail_ingest, tls_folder, events):
    send(settings_for(webmail_ingest, tls_folder))
    payload = events.get()["payload"]
    assert payload["authenticated_account"] == CAMILLE
    assert payload["recipients"] == [DOMINIQUE]


def test_an_unknown_recipient_is_named(webmail_ingest, tls_folder):
    with pytest.raises(submission.SubmissionError) as refused:
        send(settings_for(webmail_ingest, tls_folder), [f"personne.inconnue@{DOMAIN}"])
    assert refused.value.message == f"Destinataire inconnu : personne.inconnue@{DOMAIN}."
    assert not refused.value.temporary


def test_some_recipients_refused_is_a_partial_send(webmail_ingest, tls_folder, events):
    with pytest.raises(submission.SubmissionError) as refused:
        send(settings_for(webmail_ingest, tls_folder), [DOMINIQUE, f"personne.inconnue@{DOMAIN}"])
    assert refused.value.partial
    assert "Destinataire inconnu : personne.inconnue@" in refused.value.message
    assert events.get()["payload"]["recipients"] == [DOMINIQUE]


def test_a_wrong_secret_is_a_temporary_failure(webmail_ingest, tls_folder):
    with pytest.raises(submission.SubmissionError) as refused:
        send(settings_for(webmail_ingest, tls_folder, submission_service_secret="mauvais"))
    assert refused.value.temporary and "brouillon" in refused.value.message


def test_an_untrusted_certificate_is_refused(webmail_ingest, tls_folder, tmp_path):
    from ingest.tls import ensure_self_signed

    other = tmp_path / "autre.crt"
    ensure_self_signed(other, tmp_path / "autre.key", "localhost")
    with pytest.raises(submission.SubmissionError) as refused:
        send(settings_for(webmail_ingest, tls_folder, submission_ca_file=str(other)))
    assert refused.value.temporary and "ne répond pas" in refused.value.message


def test_submission_down_keeps_the_draft(tls_folder):
    settings = dataclasses.replace(
        get_settings(),
        smtp_host="127.0.0.1",
        smtp_submission_port=free_port(),
        submission_service_secret=SECRET,
    )
    with pytest.raises(submission.SubmissionError) as refused:
        send(settings)
    assert refused.value.temporary
    assert "gardé en brouillon, réessayez" in refused.value.message


def test_no_secret_configured():
    with pytest.raises(submission.SubmissionError) as refused:
        send(dataclasses.replace(get_settings(), submission_service_secret=""))
    assert refused.value.temporary
