"""The delivery service: mailbox entries for local recipients, the outbound queue for the others.

- `mail.classified`: each local recipient gets an entry in INBOX (ham) or Junk (spam); an authenticated
  submission also gets a Sent entry in the sender's mailbox; external recipients of a submission are put
  in the `outbound` collection, the durable queue the relay works from.
- `mail.infected`: each local recipient gets an entry in Quarantine, never in INBOX; nothing infected is
  ever relayed outside.

The raw message is parsed once per event, not once per recipient. The entries and usage counters of the
events being handled at the same time are written together (`mailstore.EntryWriter`). Entries have ids
derived from (message, mailbox, copy) — the message being its Message-ID header and envelope sender when
it has one (`mailstore.delivery_key`) — so a redelivered event, or a sender's retry after a lost 250, adds
nothing; `mail.delivered` is published for every entry with a derived event id, so a redelivery
publishes the same events again and notify ignores them.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.timer import timer
from prometheus_client import Counter, Histogram
from pymongo.errors import DuplicateKeyError

from common import mailstore
from common.bus import EventPublisherProvider, event_handler
from common.config import get_settings
from common.db import get_database, utcnow
from common.dependencies import BlobStoreProvider, DatabaseProvider
from common.events import Envelope
from delivery import relay

log = logging.getLogger(__name__)

ENTRIES = Counter("delivery_entries_total", "Mailbox entries stored, by folder.", ["folder"])
OUTBOUND = Counter("delivery_outbound_total", "External recipients queued for relay.")
DELIVERY_SECONDS = Histogram(
    "delivery_seconds",
    "Time to file one message for all its recipients.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LATENCY = Histogram(
    "delivery_latency_seconds",
    "From ingest's acceptance of a message to its mailbox entries.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

INDEXES = {**mailstore.INDEXES, **relay.INDEXES}

BOUNCES = Counter("delivery_bounces_total", "Recipients that will not get a message, by reason.", ["reason"])


def is_local(address: str, domain: str) -> bool:
    """True when `address` belongs to the academy's mail domain."""
    return address.rpartition("@")[2].lower() == domain.lower()


class EntryWriterProvider(DependencyProvider):
    """The process's `mailstore.EntryWriter`: concurrent deliveries share their inserts and counters."""

    def setup(self) -> None:
        self.writer = mailstore.EntryWriter(get_database())

    def get_dependency(self, worker_ctx) -> mailstore.EntryWriter:
        return self.writer


class DeliveryService:
    name = "delivery"

    db = DatabaseProvider(INDEXES)
    blobs = BlobStoreProvider()
    publisher = EventPublisherProvider()
    entries = EntryWriterProvider()

    @event_handler("mail.classified")
    def on_mail_classified(self, envelope: Envelope) -> None:
        payload = envelope.payload
        folder = mailstore.JUNK if payload["verdict"] == "spam" else mailstore.INBOX
        extra = {
            "spam": {
                "verdict": payload["verdict"],
                "score": payload["score"],
                "model_version": payload["model_version"],
                "reasons": payload.get("reasons", []),
            }
        }
        self._file(envelope, folder, extra, relay_external=True)

    @event_handler("mail.infected")
    def on_mail_infected(self, envelope: Envelope) -> None:
        extra = {"virus": {"signature": envelope.payload["signature"]}}
        self._file(envelope, mailstore.QUARANTINE, extra, relay_external=False)

    def _file(self, envelope: Envelope, folder: str, extra: dict[str, Any], relay_external: bool) -> None:
        settings = get_settings()
        payload = envelope.payload
        message_id = payload["message_id"]
        with DELIVERY_SECONDS.time():
            raw = self.blobs.get(message_id)
            summary = mailstore.summarize(raw).to_document()
            now = utcnow()
            base = {
                "message_id": message_id,
                "size": len(raw),
                "received_at": now,
                "envelope_from": payload["sender"],
                **summary,
                **extra,
            }
            key = mailstore.delivery_key(message_id, summary["message_id_header"], payload["sender"])
            local = sorted({r.lower() for r in payload["recipients"] if is_local(r, settings.mail_domain)})
            external = sorted({r for r in payload["recipients"] if not is_local(r, settings.mail_domain)})
            if folder != mailstore.QUARANTINE:
                local = self._within_quota(envelope, key, local, len(raw))
            entries = [
                {
                    **base,
                    "_id": mailstore.entry_id(key, mailbox, "rcpt"),
                    "mailbox": mailbox,
                    "folder": folder,
                    "flags": {"seen": False, "flagged": False, "answered": False},
                }
                for mailbox in local
            ]
            author = payload.get("authenticated_account")
            if payload["origin"] == "submission" and author and folder != mailstore.QUARANTINE:
                entries.append(
                    {
                        **base,
                        "_id": mailstore.entry_id(key, author, "sent"),
                        "mailbox": author,
                        "folder": mailstore.SENT,
                        "flags": {"seen": True, "flagged": False, "answered": False},
                    }
                )
            inserted = self.entries.insert(entries)
            self.entries.add_usage([e for e in entries if e["_id"] in inserted])
            for entry in entries:
                if entry["_id"] in inserted:
                    ENTRIES.labels(entry["folder"]).inc()
            if external:
                self._queue_outbound(envelope, external, relay_external)
        for entry in entries:
            self.publisher.publish(
                "mail.delivered",
                {
                    "message_id": message_id,
                    "mailbox": entry["mailbox"],
                    "folder": entry["folder"],
                    "entry_id": entry["_id"],
                },
                parent=envelope,
                key=entry["_id"],
            )
        received_at = payload.get("received_at")
        if received_at and inserted:
            try:
                accepted = dt.datetime.fromisoformat(received_at.replace("Z", "+00:00"))
                LATENCY.observe(max(0.0, (utcnow() - accepted).total_seconds()))
            except ValueError:
                pass
        log.info(
            "message filed",
            extra={"message_id": message_id, "folder": folder, "entries": len(entries), "new": len(inserted)},
        )

    def _queue_outbound(self, envelope: Envelope, recipients: list[str], relay: bool) -> None:
        """Record external recipients in the durable outbound queue (one document per recipient)."""
        payload = envelope.payload
        if payload["origin"] != "submission":
            # ingest refuses relaying for unauthenticated peers; an external recipient here is a bug.
            log.error(
                "external recipients on a message that is not a submission; not relayed",
                extra={"message_id": payload["message_id"], "count": len(recipients)},
            )
            return
        for recipient in recipients:
            document = {
                "_id": mailstore.entry_id(payload["message_id"], recipient, "outbound"),
                "message_id": payload["message_id"],
                "sender": payload["sender"],
                "recipient": recipient,
                "state": "pending" if relay else "refused",
                "reason": "" if relay else "virus",
                "attempts": 0,
                "created_at": utcnow(),
                "next_attempt_at": utcnow(),
                "trace_id": envelope.trace_id,
            }
            try:
                self.db.outbound.insert_one(document)
                OUTBOUND.inc()
            except DuplicateKeyError:
                pass

    def _within_quota(self, envelope: Envelope, key: str, mailboxes: list[str], size: int) -> list[str]:
        """The mailboxes with room for `size` more bytes; the others bounce (5.2.2, mailbox full)."""
        settings = get_settings()
        full = mailstore.over_quota(self.db, mailboxes, size, settings.mailbox_quota_bytes)
        # A redelivered event finds its entries already stored (and counted): those are not bounced.
        # Looked up only for a mailbox that seems full, one `_id` lookup each (FerretDB v1 scans the
        # collection for `$in`, docs/ARCHITECTURE.md).
        full = {m for m in full if not self._stored(mailstore.entry_id(key, m, "rcpt"))}
        for mailbox in full:
            self._bounce(
                relay.Bounce(
                    envelope.payload["message_id"],
                    envelope.payload["sender"],
                    mailbox,
                    "5.2.2",
                    "smtp; 552 5.2.2 mailbox full",
                    envelope.trace_id,
                ),
                "quota",
            )
        return [m for m in mailboxes if m not in full]

    def _stored(self, entry_id: str) -> bool:
        return self.db.mailbox_entries.find_one({"_id": entry_id}, {"_id": 1}) is not None

    def _bounce(self, bounce: relay.Bounce, reason: str) -> None:
        BOUNCES.labels(reason).inc()
        if not bounce.sender:
            return  # never bounce a bounce (null reverse path)
        self.publisher.publish(
            "mail.bounced",
            {
                "message_id": bounce.message_id,
                "sender": bounce.sender,
                "recipient": bounce.recipient,
                "status": bounce.status,
                "diagnostic": bounce.diagnostic,
            },
            key=f"{bounce.message_id}/{bounce.recipient}",
            trace_id=bounce.trace_id or None,
        )

    @timer(interval=get_settings().relay_poll_seconds)
    def relay_due(self) -> None:
        """Send what is due in the outbound queue to the smarthost."""
        settings = get_settings()
        worker = relay.Relay(
            self.db,
            self.blobs,
            relay.SmtpRelay(settings.smarthost, helo=f"mail.{settings.mail_domain}"),
            tuple(int(x) for x in settings.relay_retry_delays.split(",") if x.strip()),
            settings.relay_max_age_hours,
        )
        for bounce in worker.run_once():
            self._bounce(bounce, "relay")
