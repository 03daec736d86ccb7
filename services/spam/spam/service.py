"""The spam service: scores clean mail with the learned model and learns from users' reports.

- `mail.scanned`: the raw message is scored once by the active model; each recipient's own sender lists
  then decide between the model's verdict and theirs (an allowed sender is never junk, a blocked one
  always is). Recipients are grouped by verdict and one `mail.classified` event is published per group,
  with the score, the model version and, for a junk verdict, the French reasons shown with the message
  in the junk folder ("Pourquoi ce message est-il classé indésirable ?"; a ham verdict has none, which
  saves computing them for most mail). Event ids are derived from the parent event and the verdict, so
  a redelivery publishes the same events again. Events come in batches
  (`common.bus.batch_event_handler`): their blobs are read together and their `mail.classified` events
  published together.
- `mail.feedback`: "Signaler comme indésirable" / "Ce n'est pas un indésirable" from the webmail go to the
  `FeedbackLearner`, which updates the reporter's sender lists and, within its limits, the shared model;
  every SPAM_FEEDBACK_PUBLISH_SECONDS the counted reports are folded into a new active model version.
- GTUBE (SpamAssassin's standard test string) makes a message junk whatever the model says.

The classifier reloads the model when an operator activates another version (`python -m spam.admin`),
checked every SPAM_MODEL_POLL_SECONDS.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from nameko.extensions import DependencyProvider
from nameko.timer import timer
from prometheus_client import Counter, Histogram

from common.bus import EventPublisherProvider, batch_event_handler, each_event, event_handler
from common.config import get_settings
from common.db import get_database
from common.dependencies import BlobStoreProvider
from common.events import Envelope
from spam.classifier import SpamClassifier
from spam.feedback import FeedbackLearner

log = logging.getLogger(__name__)

CLASSIFIED = Counter("spam_classifications_total", "Recipients classified, by verdict.", ["verdict"])
CLASSIFY_SECONDS = Histogram(
    "spam_classify_seconds",
    "Time to classify one message for all its recipients.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
SCORES = Histogram(
    "spam_score",
    "Spam scores given by the model.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1),
)
#: The Generic Test for Unsolicited Bulk Email: a message containing it is junk, whatever the model says,
#: so that operators can check the spam path end to end (the antivirus has EICAR for the same purpose).
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_REASON = "message de test antispam (GTUBE)"

FEEDBACK = Counter("spam_feedback_total", "User reports, by label and outcome.", ["label", "outcome"])


class ClassifierProvider(DependencyProvider):
    """The classifier on the database's active model, and the feedback learner sharing it."""

    def setup(self) -> None:
        db = get_database()
        self.classifier = SpamClassifier.from_database(db)
        self.learner = FeedbackLearner(db, self.classifier)
        self.learner.ensure_indexes()

    def get_dependency(self, worker_ctx) -> ClassifierProvider:
        return self


class SpamService:
    name = "spam"

    spam = ClassifierProvider()
    blobs = BlobStoreProvider()
    publisher = EventPublisherProvider()

    @batch_event_handler("mail.scanned")
    def on_mail_scanned(self, envelopes: list[Envelope]) -> list[Exception | None]:
        """Classify a batch: blobs read together, `mail.classified` events published together."""
        raws = self.blobs.get_many([envelope.payload["message_id"] for envelope in envelopes])
        outcomes: list[Exception | None] = [None] * len(envelopes)
        classified = each_event(envelopes, raws, outcomes, self._classified)
        self.publisher.publish_batch([(i, event) for i, events in classified for event in events], outcomes)
        return outcomes

    def _classified(self, envelope: Envelope, raw: bytes) -> list[Envelope]:
        """The `mail.classified` events of one message: one per verdict among its recipients."""
        payload = envelope.payload
        recipients = payload["recipients"]
        with CLASSIFY_SECONDS.time():
            if GTUBE in raw:
                results = {r: None for r in recipients}
            else:
                results = self.spam.classifier.classify_many(
                    raw, recipients, sender=payload["sender"] or None, explain_ham=False
                )
        groups: dict[str, list[str]] = defaultdict(list)
        for recipient in recipients:
            result = results[recipient]
            groups["spam" if result is None else str(result.verdict)].append(recipient)
        passthrough = {k: v for k, v in payload.items() if k not in {"recipients", "scanner"}}
        events = []
        for verdict, members in sorted(groups.items()):
            result = results[members[0]]
            if result is None:
                score, version, reasons = 1.0, "gtube", [GTUBE_REASON]
            else:
                score, version = round(result.score, 6), result.model_version
                reasons = [reason.label for reason in result.reasons]
            SCORES.observe(score)
            CLASSIFIED.labels(verdict).inc(len(members))
            events.append(
                self.publisher.envelope(
                    "mail.classified",
                    {
                        **passthrough,
                        "recipients": members,
                        "verdict": verdict,
                        "score": score,
                        "model_version": version,
                        "reasons": reasons,
                    },
                    parent=envelope,
                    key=verdict,
                )
            )
        return events

    @timer(interval=get_settings().spam_feedback_publish_seconds)
    def publish_feedback(self) -> None:
        """Fold the reports counted since the last run into a new active model version."""
        version = self.spam.learner.publish(activate=True)
        if version:
            log.info("spam model updated from user reports", extra={"version": version})

    @event_handler("mail.feedback")
    def on_feedback(self, envelope: Envelope) -> None:
        payload = envelope.payload
        raw = self.blobs.get(payload["message_id"])
        user = payload.get("mailbox") or payload["account_id"]
        result = self.spam.learner.record(user, raw, payload["label"], sender=payload.get("sender") or None)
        FEEDBACK.labels(payload["label"], str(result.outcome)).inc()
