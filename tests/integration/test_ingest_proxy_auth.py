"""The webmail's proxy login on the real submission port: SASL PLAIN with an authzid (RFC 4616).

The service identity (SUBMISSION_SERVICE_USER / SUBMISSION_SERVICE_SECRET) sends as the user named in the
authzid; a wrong secret, an authzid that is no active local account, or an ordinary user naming someone
else are refused with 535 5.7.8.
"""

# The fixtures come from tests/smtp_helpers.py; ruff sees the test arguments as redefining them.
# ruff: noqa: F811

from __future__ import annotations

import email.policy
import smtplib
from email.message import EmailMessage

import pytest

from tests.smtp_helpers import (  # noqa: F401 - fixtures
    CAMILLE,
    CAMILLE_PASSWORD,
    DOMAIN,
    DOMINIQUE,
    blobs,
    client_tls_context,
    directory,
    events,
    publisher,
    tls_folder,
    webmail_ingest,
)
from tests.smtp_helpers import (
    WEBMAIL_SECRET as SECRET,
)


def plain(client: smtplib.SMTP, authzid: str, login: str, password: str) -> None:
    client.ehlo("webmail.test.invalid")  # smtplib's auth() does not send EHLO after STARTTLS itself
    code, _ = client.auth(
        "PLAIN", lambda challenge=None: f"{authzid}\0{login}\0{password}", initial_response_ok=True
    )
    assert code == 235


def message(sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Camille Martin <{sender}>"
    msg["To"] = DOMINIQUE
    msg["Subject"] = "Envoyé depuis le webmail"
    msg["Message-ID"] = f"<proxy-test@{DOMAIN}>"
    msg.set_content("Bonjour.\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_the_webmail_sends_as_the_user_it_names(webmail_ingest, events):
    with smtplib.SMTP("127.0.0.1", webmail_ingest.submission_port, timeout=10) as client:
        client.starttls(context=client_tls_context())
        plain(client, CAMILLE, "webmail", SECRET)
        assert client.sendmail(CAMILLE, [DOMINIQUE], message(CAMILLE)) == {}
        # Same sender rules as the user's own login.
        code, _ = client.mail(DOMINIQUE)
        assert code == 553
    payload = events.get()["payload"]
    assert payload["origin"] == "submission"
    assert payload["authenticated_account"] == CAMILLE
    assert payload["recipients"] == [DOMINIQUE]


@pytest.mark.parametrize(
    ("authzid", "login", "password"),
    [
        (CAMILLE, "webmail", SECRET + "!"),  # wrong secret
        (f"personne.inconnue@{DOMAIN}", "webmail", SECRET),  # no such account
        (f"claude.suspendu@{DOMAIN}", "webmail", SECRET),  # suspended account
        ("", "webmail", SECRET),  # the service identity owns no mailbox
        (DOMINIQUE, CAMILLE, CAMILLE_PASSWORD),  # a user naming someone else
    ],
    ids=["wrong-secret", "unknown-authzid", "suspended-authzid", "no-authzid", "user-impersonation"],
)
def test_refused_proxy_logins(webmail_ingest, authzid, login, password):
    with smtplib.SMTP("127.0.0.1", webmail_ingest.submission_port, timeout=10) as client:
        client.starttls(context=client_tls_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            plain(client, authzid, login, password)
    assert refused.value.smtp_code == 535
    assert refused.value.smtp_error.startswith(b"5.7.8")


def test_a_user_naming_themselves_logs_in(webmail_ingest):
    with smtplib.SMTP("127.0.0.1", webmail_ingest.submission_port, timeout=10) as client:
        client.starttls(context=client_tls_context())
        plain(client, CAMILLE, CAMILLE, CAMILLE_PASSWORD)
        assert client.mail(CAMILLE)[0] == 250
