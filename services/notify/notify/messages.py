"""The platform's own mails, in French: reset link, password-change notice, quarantine notice.

Each is a stdlib `EmailMessage` marked `Auto-Submitted: auto-generated` (RFC 3834, so nobody's
auto-responder answers it), with a Message-ID derived from the event that caused it: a notice sent twice
after a crash is recognisably the same message.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from zoneinfo import ZoneInfo


def _base(sender: str, recipient: str, subject: str, event_id: str, domain: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = f"<{event_id}.notice@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = "fr"
    return message


def _when(iso: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.astimezone(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y à %H:%M")


def reset_link(
    sender: str, recipient: str, reset_url: str, expires_at: str, event_id: str, domain: str, academy: str
) -> EmailMessage:
    """The mail carrying a password-reset link to the recovery address."""
    message = _base(
        sender, recipient, f"{academy} — réinitialisation de votre mot de passe", event_id, domain
    )
    message.set_content(
        "Bonjour,\n\n"
        "Une demande de réinitialisation du mot de passe de votre messagerie académique a été faite.\n"
        "Pour choisir un nouveau mot de passe, ouvrez ce lien :\n\n"
        f"    {reset_url}\n\n"
        f"Ce lien ne fonctionne qu'une fois et expire le {_when(expires_at)}.\n\n"
        "Si vous n'êtes pas à l'origine de cette demande, ignorez ce message : votre mot de passe actuel "
        "reste valable. En cas de doute, contactez l'assistance de votre DSDEN ou du rectorat.\n\n"
        f"— {academy}\n"
    )
    return message


def password_changed(
    sender: str, recipient: str, changed_at: str, reason: str, event_id: str, domain: str, academy: str
) -> EmailMessage:
    """The notice put in a mailbox after its password changed."""
    how = "par la procédure de mot de passe oublié" if reason == "reset" else "depuis votre compte"
    message = _base(sender, recipient, "Votre mot de passe a été modifié", event_id, domain)
    message.set_content(
        "Bonjour,\n\n"
        f"Le mot de passe de votre messagerie académique a été modifié {how} le {_when(changed_at)}.\n"
        "Toutes vos sessions ouvertes ont été fermées.\n\n"
        "Si vous n'êtes pas à l'origine de ce changement, contactez sans attendre l'assistance de votre "
        "DSDEN ou du rectorat.\n\n"
        f"— {academy}\n"
    )
    return message


def quarantined(
    sender: str, recipient: str, entry: dict, event_id: str, domain: str, academy: str
) -> EmailMessage:
    """The notice telling a user that a message addressed to them was quarantined."""
    origin = (entry.get("from") or {}).get("address") or entry.get("envelope_from") or "expéditeur inconnu"
    subject = entry.get("subject") or "(sans objet)"
    signature = (entry.get("virus") or {}).get("signature", "")
    message = _base(sender, recipient, "Un message a été mis en quarantaine", event_id, domain)
    message.set_content(
        "Bonjour,\n\n"
        "L'antivirus de la messagerie académique a détecté un contenu dangereux dans un message qui vous "
        "était adressé. Il a été placé dans votre dossier Quarantaine et n'a pas été remis dans votre boîte "
        "de réception.\n\n"
        f"    Expéditeur : {origin}\n"
        f"    Objet : {subject}\n"
        f"    Détection : {signature}\n\n"
        "N'ouvrez pas ses pièces jointes. Si vous attendiez ce message, demandez à l'expéditeur de vous le "
        "renvoyer après avoir analysé ses fichiers.\n\n"
        f"— {academy}\n"
    )
    return message


_STATUS_TEXT = {
    "5.1.1": "l'adresse du destinataire n'existe pas",
    "5.2.2": "la boîte aux lettres du destinataire est pleine",
    "4.4.7": "le serveur du destinataire n'a pas pu être joint dans le délai imparti",
}


def delivery_report(
    sender_mailbox: str,
    recipient: str,
    failed_recipient: str,
    status: str,
    diagnostic: str,
    original_headers: bytes,
    event_id: str,
    domain: str,
    academy: str,
) -> EmailMessage:
    """A French delivery status notification (RFC 3464 multipart/report) for one failed recipient."""
    reason = _STATUS_TEXT.get(status, "le serveur de destination l'a refusé")
    subject_line = ""
    try:
        parsed = email.message_from_bytes(original_headers + b"\r\n", policy=email.policy.default)
        subject_line = str(parsed.get("Subject") or "")
    except Exception:  # noqa: BLE001 - a report is still owed when the original headers are broken
        subject_line = ""
    report = _base(sender_mailbox, recipient, "Message non distribué", event_id, domain)
    report.set_content(
        "Bonjour,\n\n"
        f"Votre message{f' « {subject_line} »' if subject_line else ''} n'a pas pu être remis à "
        f"{failed_recipient} : {reason}.\n\n"
        f"Détail technique : {diagnostic}\n\n"
        "Vérifiez l'adresse ou réessayez plus tard. Si le problème persiste, contactez l'assistance de votre "
        "DSDEN ou du rectorat.\n\n"
        f"— {academy}\n"
    )
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; mail.{domain}"
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {failed_recipient}"
    per_recipient["Action"] = "failed"
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = diagnostic
    report.make_mixed()
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")
    status_part = MIMEBase("message", "delivery-status")
    status_part.attach(per_message)
    status_part.attach(per_recipient)
    report.attach(status_part)
    headers_part = MIMEBase("text", "rfc822-headers")
    headers_part.set_payload(original_headers.decode("utf-8", errors="replace"))
    report.attach(headers_part)
    return report
