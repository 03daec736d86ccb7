"""The scan service: every received message gets a clamd verdict before anything else happens to it.

Clean mail goes on to the spam stage (`mail.scanned`); infected mail, or mail clamd could not scan
completely, goes to quarantine (`mail.infected`) and never to an inbox. When clamd is unreachable or
answers an error the handler raises, so the event is retried with back-off (SCAN_MAX_ATTEMPTS times, then
held in the dead-letter queue for an operator): the antivirus fails closed.
"""

from __future__ import annotations

import logging

from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge, Histogram
from pymongo import ASCENDING, IndexModel

from common.bus import EventPublisherProvider, event_handler
from common.config import get_settings
from common.db import get_database, insert_outcomes, utcnow
from common.dependencies import BlobStoreProvider, DatabaseProvider
from common.events import Envelope
from common.groupcommit import GroupCommit
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
    """The clamd scanner (host, port and timeout from the settings)."""

    def setup(self) -> None:
        settings = get_settings()
        self.scanner = ClamdScanner(settings.clamd_host, settings.clamd_port, settings.clamd_timeout)

    def get_dependency(self, worker_ctx) -> ClamdScanner:
        return self.scanner


class VerdictLog:
    """The verdicts kept in `scan_verdicts` (an audit trail for the quarantine), one per message.

    The records of concurrent workers share one insert (`common.groupcommit`); each worker returns only
    once its own is stored. A redelivered message's verdict replaces the first one with its twin.
    """

    def __init__(self, collection):
        self.collection = collection
        self._commit = GroupCommit(self._insert)

    def record(self, message_id: str, verdict: Verdict) -> None:
        document = {
            "_id": message_id,
            "verdict": verdict.label,
            "signature": verdict.signature,
            "engine": verdict.engine,
            "scanned_at": utcnow(),
        }
        outcome = self._commit.submit([document])[0]
        if isinstance(outcome, Exception):
            raise outcome

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

    @event_handler("mail.received", max_attempts=get_settings().scan_max_attempts)
    def on_mail_received(self, envelope: Envelope) -> None:
        payload = envelope.payload
        message_id = payload["message_id"]
        raw = self.blobs.get(message_id)
        with IN_FLIGHT.track_inprogress(), SCAN_SECONDS.time():
            verdict = self.clamd.scan(raw)
        SCANNED_BYTES.inc(len(raw))
        VERDICTS.labels(verdict.label).inc()
        self.verdicts.record(message_id, verdict)
        common = {k: payload[k] for k in ("message_id", "sender", "recipients", "origin")}
        extra = {k: v for k, v in payload.items() if k not in common and k not in {"size"}}
        if verdict.infected:
            log.warning(
                "virus found; message quarantined",
                extra={"message_id": message_id, "signature": verdict.signature},
            )
            self.publisher.publish(
                "mail.infected", {**extra, **common, "signature": verdict.signature}, parent=envelope
            )
        else:
            self.publisher.publish(
                "mail.scanned", {**extra, **common, "scanner": verdict.engine}, parent=envelope
            )
