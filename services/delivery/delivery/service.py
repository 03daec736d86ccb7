"""The delivery service: mailbox entries for local recipients, the outbound queue for the others.

- `mail.classified`: each local recipient gets an entry in INBOX (ham) or Junk (spam); an authenticated
  submission also gets a Sent entry in the sender's mailbox; external recipients of a submission are put
  in the `outbound` collection, the durable queue the relay works from.
- `mail.infected`: each local recipient gets an entry in Quarantine, never in INBOX; nothing infected is
  ever relayed outside.

The raw message is parsed once per event, not once per recipient. Events are handled in batches
(`common.bus.batch_event_handler`): a batch's blobs are read together, the entries and usage counters of
all its messages written in one flush (`mailstore.EntryWriter`, shared with the other batch being
handled at the same time) and its `mail.delivered` events published together; each event keeps its own
outcome. Quotas are checked before the flush, against `QuotaView` (an approximation, as before).
Entries have ids derived from (message, mailbox, copy) — the message being its Message-ID header and
envelope sender when it has one (`mailstore.delivery_key`) — so a redelivered event, or a sender's retry
after a lost 250, adds nothing; `mail.delivered` is published for every entry with a derived event id,
so a redelivery publishes the same events again and notify ignores them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.timer import timer
from prometheus_client import Counter, Histogram
from pymongo.errors import DuplicateKeyError

from common import mailstore
from common.bus import EventPublisherProvider, batch_event_handler, each_event
from common.config import get_settings
from common.db import get_database, utcnow
from common.dependencies import BlobStoreProvider, DatabaseProvider
from common.events import Envelope
from common.logs import trace_context
from delivery import relay

log = logging.getLogger(__name__)

ENTRIES = Counter("delivery_entries_total", "Mailbox entries stored, by folder.", ["folder"])
OUTBOUND = Counter("delivery_outbound_total", "External recipients queued for relay.")
DELIVERY_SECONDS = Histogram(
    "delivery_seconds",
    "Time to file one message for all its recipients (a batch's time shared among its messages).",
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


#: Seconds a mailbox's quota and usage, once read, are reused (raised by this process's own deliveries).
QUOTA_CACHE_SECONDS = 2.0
#: `mail.delivered` carries the entry's list fields for notify unless they are longer than this (chars).
SUMMARY_MAX_CHARS = 2_000


class QuotaView:
    """Quota and usage of mailboxes as delivery checks them: read once per `ttl` seconds per mailbox.

    Usage is an approximation under concurrent deliveries anyway (`mailstore.over_quota`); between two
    reads the view adds this process's own new entries, so a burst of mail to one mailbox costs one
    read per `ttl` instead of one per message. What others change (another delivery process, the
    webmail deleting mail, an operator raising a quota) is seen within `ttl` seconds.
    """

    def __init__(self, db, default_quota: int, ttl: float = QUOTA_CACHE_SECONDS, clock=time.monotonic):
        self.db, self.default_quota, self.ttl, self.clock = db, default_quota, ttl, clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, int, int]] = {}  # mailbox -> (expires, quota, used)

    def full(self, mailboxes: list[str], size: int) -> set[str]:
        """The mailboxes that `size` more bytes would take over their quota."""
        full = set()
        for mailbox in mailboxes:
            now = self.clock()
            with self._lock:
                known = self._known.get(mailbox)
            if known is None or known[0] <= now:
                # One `_id` lookup each: FerretDB v1 scans the collection for `$in`.
                doc = self.db.mailboxes.find_one({"_id": mailbox}, {"used_bytes": 1, "quota_bytes": 1}) or {}
                quota = doc.get("quota_bytes") or self.default_quota
                known = (now + self.ttl, quota, doc.get("used_bytes", 0))
                with self._lock:
                    self._known[mailbox] = known
                    if len(self._known) > 10_000:
                        for stale in [m for m, k in self._known.items() if k[0] <= now]:
                            del self._known[stale]
            if known[2] + size > known[1]:
                full.add(mailbox)
        return full

    def added(self, entries: list[dict[str, Any]]) -> None:
        """Count newly stored entries in the cached usage of their mailboxes."""
        with self._lock:
            for entry in entries:
                known = self._known.get(entry["mailbox"])
                if known is not None:
                    self._known[entry["mailbox"]] = (known[0], known[1], known[2] + int(entry.get("size", 0)))


class QuotaProvider(DependencyProvider):
    def setup(self) -> None:
        self.view = QuotaView(get_database(), get_settings().mailbox_quota_bytes)

    def get_dependency(self, worker_ctx) -> QuotaView:
        return self.view


def live_summary(entry: dict[str, Any]) -> dict[str, Any] | None:
    """What notify shows of a new entry (`mail.delivered`'s optional `summary`); None when too long."""
    sender = entry.get("from")
    summary = {
        "from": sender,
        "subject": entry.get("subject", ""),
        "snippet": entry.get("snippet", ""),
        "has_attachments": bool(entry.get("has_attachments", False)),
        "received_at": entry["received_at"].isoformat(),
    }
    length = len(summary["subject"]) + len(summary["snippet"])
    if isinstance(sender, dict):
        length += len(sender.get("name") or "") + len(sender.get("address") or "")
    return summary if length <= SUMMARY_MAX_CHARS else None


class EntryWriterProvider(DependencyProvider):
    """The process's `mailstore.EntryWriter`: concurrent deliveries share their inserts and counters."""

    def setup(self) -> None:
        self.writer = mailstore.EntryWriter(get_database())

    def get_dependency(self, worker_ctx) -> mailstore.EntryWriter:
        return self.writer


@dataclass
class _Filing:
    """What delivery plans for one message of a batch before the batch's insert."""

    envelope: Envelope
    folder: str
    entries: list[dict[str, Any]]
    external: list[str]
    relay: bool


class DeliveryService:
    name = "delivery"

    db = DatabaseProvider(INDEXES)
    blobs = BlobStoreProvider()
    publisher = EventPublisherProvider()
    entries = EntryWriterProvider()
    quota = QuotaProvider()

    @batch_event_handler("mail.classified")
    def on_mail_classified(self, envelopes: list[Envelope]) -> list[Exception | None]:
        return self._file_batch(envelopes, self._classified_placement)

    @batch_event_handler("mail.infected")
    def on_mail_infected(self, envelopes: list[Envelope]) -> list[Exception | None]:
        return self._file_batch(envelopes, self._infected_placement)

    @staticmethod
    def _classified_placement(payload: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
        folder = mailstore.JUNK if payload["verdict"] == "spam" else mailstore.INBOX
        extra = {
            "spam": {
                "verdict": payload["verdict"],
                "score": payload["score"],
                "model_version": payload["model_version"],
                "reasons": payload.get("reasons", []),
            }
        }
        return folder, extra, True

    @staticmethod
    def _infected_placement(payload: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
        return mailstore.QUARANTINE, {"virus": {"signature": payload["signature"]}}, False

    def _file_batch(self, envelopes: list[Envelope], placement) -> list[Exception | None]:
        """File a batch: blobs read together, every entry of every message in one insert (with the
        usage counters), `mail.delivered` events published together. Each message keeps its outcome."""
        outcomes: list[Exception | None] = [None] * len(envelopes)
        started = time.perf_counter()
        try:
            raws = self.blobs.get_many([envelope.payload["message_id"] for envelope in envelopes])
            planned = each_event(
                envelopes,
                raws,
                outcomes,
                lambda envelope, raw: self._plan(envelope, raw, *placement(envelope.payload)),
            )
            try:
                inserted = self.entries.insert_counted([e for _, plan in planned for e in plan.entries])
            except Exception as exc:  # noqa: BLE001 - nothing of the batch is known stored: all retried
                for index, _ in planned:
                    outcomes[index] = exc
                return outcomes
            self.quota.added([e for _, plan in planned for e in plan.entries if e["_id"] in inserted])
            events: list[tuple[int, Envelope]] = []
            for index, plan in planned:
                try:
                    with trace_context(plan.envelope.trace_id):
                        events.extend((index, event) for event in self._filed(plan, inserted))
                except Exception as exc:  # noqa: BLE001 - that message's outcome: retried
                    outcomes[index] = exc
        finally:
            share = (time.perf_counter() - started) / len(envelopes)
            for _ in envelopes:
                DELIVERY_SECONDS.observe(share)
        self.publisher.publish_batch(events, outcomes)
        return outcomes

    def _plan(
        self, envelope: Envelope, raw: bytes, folder: str, extra: dict[str, Any], relay: bool
    ) -> _Filing:
        """The entries of one message (its local recipients within quota, and the author's Sent copy)."""
        settings = get_settings()
        payload = envelope.payload
        message_id = payload["message_id"]
        summary = mailstore.summarize(raw).to_document()
        base = {
            "message_id": message_id,
            "size": len(raw),
            "received_at": utcnow(),
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
        return _Filing(envelope, folder, entries, external, relay)

    def _filed(self, plan: _Filing, inserted: set[str]) -> list[Envelope]:
        """After the insert: the outbound queue, metrics and log of one message, and its events."""
        payload = plan.envelope.payload
        message_id = payload["message_id"]
        new = [entry for entry in plan.entries if entry["_id"] in inserted]
        for entry in new:
            ENTRIES.labels(entry["folder"]).inc()
        if plan.external:
            self._queue_outbound(plan.envelope, plan.external, plan.relay)
        events = []
        for entry in plan.entries:
            delivered = {
                "message_id": message_id,
                "mailbox": entry["mailbox"],
                "folder": entry["folder"],
                "entry_id": entry["_id"],
            }
            # Only for an entry stored now: a redelivery's notify reads the entry stored the first time.
            summary = live_summary(entry) if entry["_id"] in inserted else None
            if summary is not None:
                delivered["summary"] = summary
            events.append(
                self.publisher.envelope("mail.delivered", delivered, parent=plan.envelope, key=entry["_id"])
            )
        received_at = payload.get("received_at")
        if received_at and new:
            try:
                accepted = dt.datetime.fromisoformat(received_at.replace("Z", "+00:00"))
                LATENCY.observe(max(0.0, (utcnow() - accepted).total_seconds()))
            except ValueError:
                pass
        log.info(
            "message filed",
            extra={
                "message_id": message_id,
                "folder": plan.folder,
                "entries": len(plan.entries),
                "new": len(new),
            },
        )
        return events

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
        full = self.quota.full(mailboxes, size)
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
