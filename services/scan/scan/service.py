"""The scan service: every received message gets a clamd verdict before anything else happens to it.

Clean mail goes on to the spam stage (`mail.scanned`); infected mail, or mail clamd could not scan
completely, goes to quarantine (`mail.infected`) and never to an inbox. When clamd is unreachable or
answers an error, that message's event is retried with back-off (SCAN_MAX_ATTEMPTS times, then held in
the dead-letter queue for an operator): the antivirus fails closed.

Events are handled in batches (`common.bus.batch_event_handler`): the blobs of a batch are read
together, its verdicts stored in one insert and its events published together; each message keeps its
own outcome.
"""

from __future__ import annotations

import logging

from eventlet.greenpool import GreenPool
from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge, Histogram
from pymongo import ASCENDING, IndexModel

from common.bus import EventPublisherProvider, batch_event_handler
from common.config import get_settings
from common.db import get_database, insert_outcomes, utcnow
from common.dependencies import BlobStoreProvider, DatabaseProvider
from common.events import Envelope
from common.groupcommit import GroupCommit
from common.logs import trace_context
from scan.clamd import ClamdScanner, Verdict

log = logging.getLogger(__name__)

SCAN_SECONDS = Histogram(
    "scan_duration_seconds",
    "Time clamd took to scan one message.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
VERDICTS = Counter("scan_verdicts_total", "Scan outcomes.", ["verdict"])
IN_FLIGHT = Gauge("scan_in_flight", "Messages being scanned right now.")
SCANNED_BYTES = Counter("scan_bytes_total", "Bytes of mail scanned.")

INDEXES = {"scan_verdicts": [IndexModel([("scanned_at", ASCENDING)], name="scanned_at")]}


class ClamdProvider(DependencyProvider):
    """The clamd scanner (host, port and timeout from the settings), and the green threads that send it
    the process's scans: WORKER_COUNT at a time at most, whatever the number of batches being handled."""

    def setup(self) -> None:
        settings = get_settings()
        self.scanner = ClamdScanner.from_settings(settings)
        self.pool = GreenPool(settings.worker_count)

    def get_dependency(self, worker_ctx) -> ClamdProvider:
        return self


class VerdictLog:
    """The verdicts kept in `scan_verdicts` (an audit trail for the quarantine), one per message.

    The records of concurrent workers share one insert (`common.groupcommit`); each worker returns only
    once its own is stored. A redelivered message's verdict replaces the first one with its twin.
    """

    def __init__(self, collection):
        self.collection = collection
        self._commit = GroupCommit(self._insert)

    def record_many(self, verdicts: list[tuple[str, Verdict]]) -> list[Exception | None]:
        """Store the verdicts of (message id, verdict) pairs; one outcome each (None: stored)."""
        now = utcnow()
        documents = [
            {
                "_id": message_id,
                "verdict": verdict.label,
                "signature": verdict.signature,
                "engine": verdict.engine,
                "scanned_at": now,
            }
            for message_id, verdict in verdicts
        ]
        outcomes = self._commit.submit(documents)
        return [outcome if isinstance(outcome, Exception) else None for outcome in outcomes]

    def _insert(self, documents: list[dict]) -> list[bool | Exception]:
        outcomes = insert_outcomes(self.collection, documents)
        for index, outcome in enumerate(outcomes):
            if outcome is False:  # already recorded: a redelivery
                try:
                    self.collection.replace_one({"_id": documents[index]["_id"]}, documents[index])
                    outcomes[index] = True
                except Exception as exc:  # noqa: BLE001 - that record's outcome
                    outcomes[index] = exc
        return outcomes


class VerdictLogProvider(DependencyProvider):
    def setup(self) -> None:
        self.log = VerdictLog(get_database().scan_verdicts)

    def get_dependency(self, worker_ctx) -> VerdictLog:
        return self.log


class ScanService:
    name = "scan"

    clamd = ClamdProvider()
    blobs = BlobStoreProvider()
    db = DatabaseProvider(INDEXES)  # creates the indexes of `scan_verdicts`
    verdicts = VerdictLogProvider()
    publisher = EventPublisherProvider()

    @batch_event_handler("mail.received", max_attempts=get_settings().scan_max_attempts)
    def on_mail_received(self, envelopes: list[Envelope]) -> list[Exception | None]:
        """Scan a batch: blobs read together, scanned in parallel (`ClamdProvider.pool`), verdicts stored
        and events published together. An event whose scan failed gets its exception (it is retried)."""
        raws = self.blobs.get_many([envelope.payload["message_id"] for envelope in envelopes])
        verdicts = list(self.clamd.pool.imap(self._scan, raws))
        outcomes: list[Exception | None] = [v if isinstance(v, Exception) else None for v in verdicts]
        scanned = [i for i, verdict in enumerate(verdicts) if isinstance(verdict, Verdict)]
        recorded = self.verdicts.record_many(
            [(envelopes[i].payload["message_id"], verdicts[i]) for i in scanned]
        )
        events = []
        for i, failure in zip(scanned, recorded, strict=True):
            if failure is not None:
                outcomes[i] = failure
            else:
                events.append((i, self._event(envelopes[i], verdicts[i])))
        self.publisher.publish_batch(events, outcomes)
        return outcomes

    def _scan(self, raw: bytes | Exception) -> Verdict | Exception:
        if isinstance(raw, Exception):
            return raw
        try:
            with IN_FLIGHT.track_inprogress(), SCAN_SECONDS.time():
                verdict = self.clamd.scanner.scan(raw)
        except Exception as exc:  # noqa: BLE001 - that message's outcome: retried with back-off
            return exc
        SCANNED_BYTES.inc(len(raw))
        VERDICTS.labels(verdict.label).inc()
        return verdict

    def _event(self, envelope: Envelope, verdict: Verdict) -> Envelope:
        payload = envelope.payload
        common = {k: payload[k] for k in ("message_id", "sender", "recipients", "origin")}
        extra = {k: v for k, v in payload.items() if k not in common and k not in {"size"}}
        if verdict.infected:
            with trace_context(envelope.trace_id):
                log.warning(
                    "virus found; message quarantined",
                    extra={"message_id": payload["message_id"], "signature": verdict.signature},
                )
            return self.publisher.envelope(
                "mail.infected", {**extra, **common, "signature": verdict.signature}, parent=envelope
            )
        return self.publisher.envelope(
            "mail.scanned", {**extra, **common, "scanner": verdict.engine}, parent=envelope
        )
