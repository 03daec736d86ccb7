"""Sending the webmail's messages through ingest's submission port, like any mail client.

The webmail does not know its users' passwords, so it logs in as its own service identity
(SUBMISSION_SERVICE_USER / SUBMISSION_SERVICE_SECRET) with SASL PLAIN and names the user in the
authorisation identity (RFC 4616 authzid); ingest then treats the session as the user's own, with the same
rules (MAIL FROM must be theirs). Going through ingest rather than writing to the store directly means the
webmail's mail gets the same checks, scanning, Sent copy and relaying as everyone else's.

smtplib is blocking: `send` runs it in a thread. STARTTLS is verified: against SUBMISSION_CA_FILE, or in
development against ingest's self-signed certificate in STATE_DIR/data/tls (ingest/tls.py), or the system
CAs. Failures become `SubmissionError` with a French message; `temporary` says whether the message may be
kept as a draft to try again later.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from pathlib import Path

from common.config import Settings

log = logging.getLogger(__name__)

TIMEOUT = 30.0


class SubmissionError(Exception):
    """Sending failed (or `partial`ly); `message` is French, for the user; `temporary` means "try again
    later"."""

    def __init__(self, message: str, *, temporary: bool, refused: Sequence[str] = (), partial: bool = False):
        super().__init__(message)
        self.message = message
        self.temporary = temporary
        self.refused = tuple(refused)
        #: The message did go to the other recipients.
        self.partial = partial


def ca_file(settings: Settings) -> Path | None:
    """The CA file to trust for STARTTLS, or None for the system CAs."""
    if settings.submission_ca_file:
        return Path(settings.submission_ca_file)
    development = settings.state_path / "data" / "tls" / "ingest.crt"
    if not settings.ingest_tls_cert and development.exists():
        return development
    return None


def submission_host(settings: Settings) -> str:
    """Where ingest's submission port is: SUBMISSION_HOST, else the address ingest listens on."""
    if settings.submission_host:
        return settings.submission_host
    return "127.0.0.1" if settings.smtp_host in ("", "0.0.0.0", "::") else settings.smtp_host


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A verifying client context (never CERT_NONE: the secret and the users' mail travel on it)."""
    path = ca_file(settings)
    context = ssl.create_default_context(cafile=str(path) if path else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def send(
    settings: Settings,
    *,
    account: str,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
) -> None:
    """Submit `data` (CRLF line endings) from `sender` to `recipients` as `account`; blocking."""
    if not settings.submission_service_secret:
        log.error("SUBMISSION_SERVICE_SECRET is not set: the webmail cannot send mail")
        raise SubmissionError(
            "L'envoi de messages n'est pas configuré sur ce serveur. Votre message est gardé en brouillon.",
            temporary=True,
        )
    try:
        with smtplib.SMTP(
            submission_host(settings), settings.smtp_submission_port, timeout=TIMEOUT
        ) as client:
            client.ehlo(settings.ingest_hostname or "webmail")
            client.starttls(context=tls_context(settings))
            client.ehlo(settings.ingest_hostname or "webmail")  # smtplib's auth() does not send it
            _login(client, settings, account)
            refused = client.sendmail(sender, list(recipients), data)
    except SubmissionError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        raise _refused(exc.recipients) from exc
    except smtplib.SMTPSenderRefused as exc:
        raise _from_code(exc.smtp_code, exc.smtp_error, "sender") from exc
    except smtplib.SMTPDataError as exc:
        raise _from_code(exc.smtp_code, exc.smtp_error, "data") from exc
    except smtplib.SMTPResponseException as exc:
        raise _from_code(exc.smtp_code, exc.smtp_error, "session") from exc
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        log.warning("submission unreachable: %s", exc)
        raise SubmissionError(
            "Le service d'envoi ne répond pas : votre message est gardé en brouillon, "
            "réessayez dans quelques minutes.",
            temporary=True,
        ) from exc
    if refused:
        # Some recipients were refused, the others got the message: say who did not.
        raise _refused(refused, partial=True)


def _login(client: smtplib.SMTP, settings: Settings, account: str) -> None:
    authzid, user, secret = account, settings.submission_service_user, settings.submission_service_secret
    code, text = client.auth(
        "PLAIN", lambda challenge=None: f"{authzid}\0{user}\0{secret}", initial_response_ok=True
    )
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, text)


def _refused(recipients: dict[str, tuple[int, bytes]], partial: bool = False) -> SubmissionError:
    parts = []
    temporary = True
    for address, (code, text) in recipients.items():
        detail = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
        if code >= 500:
            temporary = False
        if code == 550 and "5.1.1" in detail:
            parts.append(f"Destinataire inconnu : {address}")
        elif "4.2.1" in detail:
            parts.append(f"Boîte du destinataire momentanément suspendue : {address}")
        elif "5.2.1" in detail:
            parts.append(f"Boîte du destinataire fermée : {address}")
        elif code == 452 or "4.5.3" in detail or "5.5.3" in detail:
            parts.append(f"Trop de destinataires (refusé : {address})")
        elif code < 500:
            parts.append(f"Destinataire momentanément refusé, réessayez : {address}")
        else:
            parts.append(f"Destinataire refusé : {address}")
    message = " ; ".join(parts) + "."
    if partial:
        message = "Message envoyé aux autres destinataires, mais pas à tous. " + message
    return SubmissionError(
        message, temporary=temporary and not partial, refused=list(recipients), partial=partial
    )


def _from_code(code: int, text: bytes | str, stage: str) -> SubmissionError:
    detail = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
    log.warning("submission refused at %s: %s %s", stage, code, detail)
    if "quota" in detail.lower() or "4.2.2" in detail or "5.2.2" in detail:
        return SubmissionError("Quota dépassé : le message n'a pas pu être envoyé.", temporary=code < 500)
    if code == 552 or "5.3.4" in detail:
        return SubmissionError("Message trop volumineux pour être envoyé.", temporary=False)
    if code == 535:
        return SubmissionError(
            "Le service d'envoi a refusé la connexion du webmail. Votre message est gardé en brouillon ; "
            "prévenez l'assistance si cela se reproduit.",
            temporary=True,
        )
    if code == 553 or "5.7.1" in detail:
        return SubmissionError("Adresse d'expéditeur refusée.", temporary=False)
    if 400 <= code < 500:
        return SubmissionError(
            "Le service d'envoi est momentanément indisponible : votre message est gardé en brouillon, "
            "réessayez dans quelques minutes.",
            temporary=True,
        )
    return SubmissionError(f"Le message a été refusé par le serveur d'envoi ({code}).", temporary=False)
