"""The platform's own mails, in French: reset link, password-change notice, quarantine notice.

Each is a stdlib `EmailMessage` marked `Auto-Submitted: auto-generated` (RFC 3834, so nobody's
auto-responder answers it), with a Message-ID derived from the event that caused it: a notice sent twice
after a crash is recognisably the same message.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from email.message import EmailMessage
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
