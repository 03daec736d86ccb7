"""The relay: mail for outside the academy, sent from the `outbound` queue to the smarthost.

delivery puts one `outbound` document per (message, external recipient). Every RELAY_POLL_SECONDS the
relay takes the documents that are due, claims each attempt with a unique lease document (inserting a
unique id is atomic on MongoDB and FerretDB alike, where a conditional update is not), groups the
recipients of one message in one SMTP transaction, and records each recipient's outcome:

- 2xx: `relayed`;
- 4xx, a connection failure, or no SMARTHOST configured: `pending` again, next attempt after the
  RELAY_RETRY_DELAYS back-off, until RELAY_MAX_AGE_HOURS have passed, then `failed` and bounced;
- 5xx: `failed` at once, bounced: a `mail.bounced` event, from which notify mails the sender a
  French delivery status notification.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from collections import defaultdict
from dataclasses import dataclass

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.db import BlobStore, utcnow

log = logging.getLogger(__name__)

INDEXES = {
    "outbound": [IndexModel([("state", ASCENDING), ("next_attempt_at", ASCENDING)], name="due")],
    "outbound_leases": [IndexModel([("created_at", ASCENDING)], name="created_at")],
}


@dataclass(frozen=True)
class Outcome:
    """What happened to one recipient in one attempt."""

    recipient: str
    code: int
    text: str

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600


@dataclass(frozen=True)
class Bounce:
    """A recipient that will never get the message, for the `mail.bounced` event."""

    message_id: str
    sender: str
    recipient: str
    status: str
    diagnostic: str
    trace_id: str


def enhanced_status(code: int, text: str) -> str:
    """The RFC 3463 status in an SMTP reply text, or a generic one from the reply code."""
    first = text.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return first
    return "5.0.0" if code >= 500 else "4.0.0"


class SmtpRelay:
    """Sends one message to several recipients through the smarthost; returns an outcome per recipient."""

    def __init__(self, smarthost: str, helo: str, timeout: float = 60.0):
        self.smarthost, self.helo, self.timeout = smarthost, helo, timeout

    def send(self, sender: str, recipients: list[str], raw: bytes) -> list[Outcome]:
        if not self.smarthost:
            return [
                Outcome(r, 451, "4.4.0 no smarthost configured for mail leaving the academy")
                for r in recipients
            ]
        host, _, port = self.smarthost.rpartition(":")
        try:
            with smtplib.SMTP(host, int(port or 25), local_hostname=self.helo, timeout=self.timeout) as smtp:
                smtp.ehlo_or_helo_if_needed()
                if smtp.has_extn("starttls"):
                    smtp.starttls()
                    smtp.ehlo()
                code, reply = smtp.mail(sender)
                if code >= 400:
                    return [Outcome(r, code, reply.decode(errors="replace")) for r in recipients]
                outcomes, accepted = {}, []
                for recipient in recipients:
                    code, reply = smtp.rcpt(recipient)
                    outcomes[recipient] = Outcome(recipient, code, reply.decode(errors="replace"))
                    if code < 400:
                        accepted.append(recipient)
                if accepted:
                    code, reply = smtp.data(raw)
                    for recipient in accepted:
                        outcomes[recipient] = Outcome(recipient, code, reply.decode(errors="replace"))
                return [outcomes[r] for r in recipients]
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            return [Outcome(r, 451, f"4.4.1 smarthost unreachable: {exc}") for r in recipients]


class Relay:
    """Works through the due part of the `outbound` queue."""

    def __init__(
        self, db: Database, blobs: BlobStore, smtp: SmtpRelay, delays: tuple[int, ...], max_age_hours: float
    ):
        self.db, self.blobs, self.smtp = db, blobs, smtp
        self.delays, self.max_age = delays, dt.timedelta(hours=max_age_hours)

    def due(self, now: dt.datetime, limit: int = 200) -> list[dict]:
        return list(
            self.db.outbound.find({"state": "pending", "next_attempt_at": {"$lte": now}})
            .sort("next_attempt_at", ASCENDING)
            .limit(limit)
        )

    def claim(self, document: dict, now: dt.datetime) -> bool:
        """Own this attempt of this document; False if another relay process got it first."""
        try:
            self.db.outbound_leases.insert_one(
                {"_id": f"{document['_id']}:{document['attempts']}", "created_at": now}
            )
        except DuplicateKeyError:
            return False
        return True

    def run_once(self, now: dt.datetime | None = None) -> list[Bounce]:
        """One pass over the due documents; returns the recipients to bounce."""
        now = now or utcnow()
        claimed = [d for d in self.due(now) if self.claim(d, now)]
        by_message: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for document in claimed:
            by_message[(document["message_id"], document["sender"])].append(document)
        bounces = []
        for (message_id, sender), documents in by_message.items():
            raw = self.blobs.get(message_id)
            outcomes = self.smtp.send(sender, [d["recipient"] for d in documents], raw)
            for document, outcome in zip(documents, outcomes, strict=True):
                bounce = self._record(document, outcome, now)
                if bounce:
                    bounces.append(bounce)
        return bounces

    def _record(self, document: dict, outcome: Outcome, now: dt.datetime) -> Bounce | None:
        attempts = document["attempts"] + 1
        update = {
            "attempts": attempts,
            "last_attempt_at": now,
            "last_reply": f"{outcome.code} {outcome.text}",
        }
        expired = (
            now - document["created_at"].replace(tzinfo=document["created_at"].tzinfo or dt.UTC)
            > self.max_age
        )
        if outcome.delivered:
            update["state"] = "relayed"
            log.info("relayed", extra={"message_id": document["message_id"], "attempts": attempts})
        elif outcome.permanent or expired:
            update["state"] = "failed"
        else:
            delay = self.delays[min(attempts - 1, len(self.delays) - 1)]
            update.update(state="pending", next_attempt_at=now + dt.timedelta(seconds=delay))
        self.db.outbound.update_one({"_id": document["_id"]}, {"$set": update})
        if update["state"] != "failed":
            return None
        status = enhanced_status(outcome.code, outcome.text) if outcome.permanent else "4.4.7"
        diagnostic = (
            f"smtp; {outcome.code} {outcome.text}"
            if outcome.permanent
            else f"delivery time expired after {attempts} attempts; last reply: {outcome.code} {outcome.text}"
        )
        log.warning("relay failed; bouncing", extra={"message_id": document["message_id"], "status": status})
        return Bounce(
            document["message_id"],
            document["sender"],
            document["recipient"],
            status,
            diagnostic,
            document.get("trace_id") or "",
        )
