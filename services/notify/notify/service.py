"""The notify service: tells connected browsers about new mail and sends the platform's own mails.

- `mail.delivered`: a transient notification on the `mail.live` exchange (routing key: the mailbox) with
  the entry's list fields, for the webmail to show without a reload (the webmail counts the folder's
  unread messages itself, for the mailboxes a browser is watching); for a Quarantine entry, also a notice
  mail to the recipient. The list fields come with the event (its `summary`, from delivery); the entry is
  read only when the event has none, and for a Quarantine notice. Events come in batches
  (`common.bus.batch_event_handler`), and a batch's notifications leave together.
- `account.reset_requested`: the reset link, mailed to the recovery address.
- `account.password_changed`: a notice mailed to the mailbox.
- `mail.bounced`: a French delivery status notification (RFC 3464) mailed to the sender.

Mails go through the real SMTP path: to the academy's MX (ingest, MX_ADDRESS) for local addresses, to
the SMARTHOST for outside ones. Sending is at-least-once with a claim per event in `notify_sent`: a
redelivered event whose mail already left sends nothing; one that crashed mid-send sends again (same
Message-ID).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
from email.message import EmailMessage

import amqp
from kombu import Connection
from nameko.extensions import DependencyProvider
from prometheus_client import Counter
from pymongo.errors import DuplicateKeyError

from common import mailstore
from common.bus import batch_event_handler, corked, each_event, event_handler
from common.config import get_settings
from common.db import BlobNotFound, utcnow
from common.dependencies import BlobStoreProvider, DatabaseProvider
from common.events import Envelope
from common.topology import LIVE_EXCHANGE
from notify import messages

log = logging.getLogger(__name__)

LIVE = Counter("notify_live_notifications_total", "Notifications sent to connected browsers.")
#: How much of the original message a delivery report quotes (its headers only, RFC 3462).
ORIGINAL_HEADERS_LIMIT = 64 * 1024

MAILS = Counter("notify_mails_sent_total", "Mails the platform sent, by kind.", ["kind"])

#: What the live notification shows of an entry, read from the entry when the event has no summary.
_LIST_FIELDS = {
    "from": 1,
    "subject": 1,
    "snippet": 1,
    "received_at": 1,
    "virus": 1,
    "envelope_from": 1,
    "has_attachments": 1,
}


class RelayUnavailable(RuntimeError):
    """A mail for outside the academy cannot leave: no smarthost is configured."""


class Mailer:
    """Sends a message over SMTP: local addresses to the MX, outside ones to the smarthost."""

    def __init__(self, domain: str, mx: tuple[str, int], smarthost: str, timeout: float = 30.0):
        self.domain, self.mx, self.smarthost, self.timeout = domain.lower(), mx, smarthost, timeout

    def route(self, recipient: str) -> tuple[str, int]:
        if recipient.rpartition("@")[2].lower() == self.domain:
            return self.mx
        if not self.smarthost:
            raise RelayUnavailable(f"no SMARTHOST configured to reach {recipient.rpartition('@')[2]}")
        host, _, port = self.smarthost.rpartition(":")
        return host, int(port or 25)

    def send(self, message: EmailMessage, recipient: str, envelope_sender: str = "") -> None:
        host, port = self.route(recipient)
        with smtplib.SMTP(host, port, timeout=self.timeout) as smtp:
            # Null reverse path: these are automatic notices, which must never bounce back (RFC 3834).
            smtp.send_message(message, from_addr=envelope_sender, to_addrs=[recipient])


class MailerProvider(DependencyProvider):
    def setup(self) -> None:
        settings = get_settings()
        self.mailer = Mailer(settings.mail_domain, settings.mx_endpoint(), settings.smarthost)

    def get_dependency(self, worker_ctx) -> Mailer:
        return self.mailer


class LiveChannel:
    """Publishes transient notifications to `mail.live`; nothing is kept when no browser listens.

    Each notification is one `basic.publish` on the channel: kombu's `Producer.publish` with its retry
    wrapper cost about four times as much CPU per notification. A publish that fails on a lost
    connection is tried again on a new one, up to `ATTEMPTS` times in all.
    """

    ATTEMPTS = 4

    def __init__(self, url: str):
        self.url = url
        self._connect()

    def _connect(self) -> None:
        self.connection = Connection(self.url, connect_timeout=5)
        self.channel = self.connection.channel()
        LIVE_EXCHANGE(self.channel).declare()
        self.errors = self.connection.connection_errors + self.connection.channel_errors

    def publish(self, mailbox: str, notification: dict) -> None:
        message = amqp.Message(
            json.dumps(notification, default=str),
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=1,
        )
        for attempt in range(1, self.ATTEMPTS + 1):
            try:
                self.channel.basic_publish(message, LIVE_EXCHANGE.name, mailbox)
                return
            except self.errors:
                if attempt == self.ATTEMPTS:
                    raise
                log.warning("live notification not published; reconnecting", exc_info=True)
                self.connection.collect()  # drops the dead connection without talking to the broker
                self._connect()

    def corked(self):
        """A block whose notifications leave together (`common.bus.corked`): a batch's in one segment."""
        return corked(self.connection.connection)

    def close(self) -> None:
        self.connection.release()


class LiveProvider(DependencyProvider):
    def setup(self) -> None:
        self.channel: LiveChannel | None = None

    def get_dependency(self, worker_ctx) -> LiveChannel:
        if self.channel is None:
            self.channel = LiveChannel(self.container.config["AMQP_URI"])
        return self.channel

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()


def _entry_of_summary(summary) -> dict | None:
    """The list fields `mail.delivered` carries (delivery's `summary`), as the entry would give them."""
    if not isinstance(summary, dict):
        return None
    try:
        received_at = dt.datetime.fromisoformat(summary["received_at"])
        return {
            "from": summary.get("from"),
            "subject": summary.get("subject", ""),
            "snippet": summary.get("snippet", ""),
            "has_attachments": bool(summary.get("has_attachments", False)),
            "received_at": received_at,
        }
    except (KeyError, TypeError, ValueError):
        return None


class NotifyService:
    name = "notify"

    db = DatabaseProvider()
    blobs = BlobStoreProvider()
    live = LiveProvider()
    mailer = MailerProvider()

    @batch_event_handler("mail.delivered")
    def on_mail_delivered(self, envelopes: list[Envelope]) -> list[Exception | None]:
        """Announce a batch of new entries, their notifications leaving together."""
        outcomes: list[Exception | None] = [None] * len(envelopes)
        with self.live.corked():
            each_event(envelopes, None, outcomes, self._announce)
        return outcomes

    def _announce(self, envelope: Envelope) -> None:
        payload = envelope.payload
        entry = _entry_of_summary(payload.get("summary"))
        if entry is None or payload["folder"] == mailstore.QUARANTINE:
            entry = self.db.mailbox_entries.find_one({"_id": payload["entry_id"]}, _LIST_FIELDS)
            if entry is None:
                raise LookupError(f"mailbox entry {payload['entry_id']} not found")
        self.live.publish(
            payload["mailbox"],
            {
                "type": "new_mail",
                "mailbox": payload["mailbox"],
                "folder": payload["folder"],
                "entry_id": payload["entry_id"],
                "from": entry.get("from"),
                "subject": entry.get("subject", ""),
                "snippet": entry.get("snippet", ""),
                "has_attachments": entry.get("has_attachments", False),
                "received_at": entry.get("received_at"),
            },
        )
        LIVE.inc()
        if payload["folder"] == mailstore.QUARANTINE:
            settings = get_settings()
            self._send_once(
                envelope,
                "quarantine",
                payload["mailbox"],
                messages.quarantined(
                    settings.notify_sender,
                    payload["mailbox"],
                    entry,
                    envelope.event_id,
                    settings.mail_domain,
                    settings.academy_name,
                ),
            )

    @event_handler("mail.bounced")
    def on_mail_bounced(self, envelope: Envelope) -> None:
        settings = get_settings()
        payload = envelope.payload
        try:
            raw = self.blobs.get(payload["message_id"])
            headers = raw[:ORIGINAL_HEADERS_LIMIT].split(b"\r\n\r\n", 1)[0]
        except BlobNotFound:
            headers = b""
        report = messages.delivery_report(
            f"Système de messagerie <MAILER-DAEMON@{settings.mail_domain}>",
            payload["sender"],
            payload["recipient"],
            payload["status"],
            payload["diagnostic"],
            headers,
            envelope.event_id,
            settings.mail_domain,
            settings.academy_name,
        )
        self._send_once(envelope, "bounce", payload["sender"], report)

    @event_handler("account.reset_requested")
    def on_reset_requested(self, envelope: Envelope) -> None:
        settings = get_settings()
        payload = envelope.payload
        message = messages.reset_link(
            settings.notify_sender,
            payload["recovery_address"],
            payload["reset_url"],
            payload["expires_at"],
            envelope.event_id,
            settings.mail_domain,
            settings.academy_name,
        )
        self._send_once(envelope, "reset", payload["recovery_address"], message)

    @event_handler("account.password_changed")
    def on_password_changed(self, envelope: Envelope) -> None:
        settings = get_settings()
        payload = envelope.payload
        message = messages.password_changed(
            settings.notify_sender,
            payload["address"],
            payload["changed_at"],
            payload["reason"],
            envelope.event_id,
            settings.mail_domain,
            settings.academy_name,
        )
        self._send_once(envelope, "password_changed", payload["address"], message)

    def _send_once(self, envelope: Envelope, kind: str, recipient: str, message: EmailMessage) -> None:
        claim_id = f"{envelope.event_id}:{kind}"
        try:
            self.db.notify_sent.insert_one(
                {"_id": claim_id, "state": "sending", "kind": kind, "at": utcnow()}
            )
        except DuplicateKeyError:
            if (self.db.notify_sent.find_one({"_id": claim_id}) or {}).get("state") == "sent":
                log.info("notice already sent; redelivery ignored", extra={"kind": kind})
                return
        self.mailer.send(message, recipient)
        self.db.notify_sent.update_one({"_id": claim_id}, {"$set": {"state": "sent", "sent_at": utcnow()}})
        MAILS.labels(kind).inc()
        # The address is not a secret, the reset link is: it is never logged.
        log.info("mail sent", extra={"kind": kind, "recipient": recipient})
