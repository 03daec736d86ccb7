"""Put a few messages in the demo account's inbox, through the real MX (`make run`).

The messages go through the whole pipeline (ingest, scan, spam, delivery, notify) like any mail. Their
Message-IDs are fixed, so running this again changes nothing: delivery files a message with the same
Message-ID and envelope sender once per mailbox.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import sys
from email.message import EmailMessage
from email.utils import format_datetime

from common.config import get_settings

DEMO_MESSAGES = (
    {
        "id": "demo-1-conseil-pedagogique",
        "from": ("Yann Le Goff", "yann.le-goff@ac-montpellier.fr"),
        "subject": "Conseil pédagogique du jeudi 3 décembre",
        "body": (
            "Bonjour à toutes et à tous,\n\n"
            "Le conseil pédagogique se réunira jeudi 3 décembre à 17 h en salle polyvalente.\n"
            "Vous trouverez l'ordre du jour en pièce jointe.\n\n"
            "Bien cordialement,\nYann Le Goff\nPrincipal adjoint"
        ),
        "attachment": (
            "ordre-du-jour.txt",
            "1. Projet d'établissement\n2. Voyages scolaires\n3. Questions diverses\n",
        ),
    },
    {
        "id": "demo-2-inspection",
        "from": ("Aïcha N'Diaye", "aicha.n-diaye@ac-montpellier.fr"),
        "subject": "Visite d'accompagnement — proposition de dates",
        "body": (
            "Madame,\n\nJe vous propose les dates suivantes pour la visite d'accompagnement : "
            "mardi 8 ou jeudi 10 décembre, en matinée.\nMerci de me faire part de vos disponibilités.\n\n"
            "Aïcha N'Diaye\nInspectrice de l'Éducation nationale"
        ),
    },
    {
        "id": "demo-3-dsden",
        "from": ("DSDEN de l'Hérault", "ce.dsden34@ac-montpellier.fr"),
        "subject": "Calendrier des formations du second trimestre",
        "body": (
            "Bonjour,\n\nLe calendrier des formations du second trimestre est disponible sur l'intranet "
            "académique. Les inscriptions sont ouvertes jusqu'au 18 décembre.\n\n"
            "Le service de la formation continue"
        ),
    },
)


def build(message: dict, recipient: str, domain: str) -> EmailMessage:
    mail = EmailMessage()
    name, address = message["from"]
    mail["From"] = f"{name} <{address}>"
    mail["To"] = recipient
    mail["Subject"] = message["subject"]
    mail["Date"] = format_datetime(dt.datetime.now().astimezone())
    mail["Message-ID"] = f"<{message['id']}@{domain}>"
    mail.set_content(message["body"])
    if "attachment" in message:
        filename, text = message["attachment"]
        mail.add_attachment(text.encode(), maintype="text", subtype="plain", filename=filename)
    return mail


def main() -> int:
    settings = get_settings()
    recipient = f"camille.martin@{settings.mail_domain}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_mx_port, timeout=30) as smtp:
            for message in DEMO_MESSAGES:
                mail = build(message, recipient, settings.mail_domain)
                smtp.send_message(mail, from_addr=message["from"][1], to_addrs=[recipient])
    except (OSError, smtplib.SMTPException) as exc:
        print(f"  demo mail not sent ({exc}); the inbox starts empty", file=sys.stderr)
        return 0
    print(f"  demo mail: {len(DEMO_MESSAGES)} messages for {recipient}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
