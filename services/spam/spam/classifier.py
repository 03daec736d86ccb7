"""The one question the mail pipeline asks: is this message spam for this recipient, and why?

`SpamClassifier.classify(raw, recipient, sender)` parses the message, scores it with the active model and
then applies the recipient's own sender lists: a blocked sender is junk and an allowed one is not, whatever
the score (the score is still reported). The result carries what the `mail.classified` event publishes:
score, verdict, model version and the few features that weighed most, labelled in French for "Pourquoi ce
message est-il classé indésirable ?".

The nameko service is a thin layer over this class: it builds one with `SpamClassifier.from_database()` at
start, calls `refresh()` from a timer (or lets `classify` do it every SPAM_MODEL_POLL_SECONDS) so that an
operator's `activate`/`rollback` reaches every worker, and hands `FeedbackLearner` the same instance.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from spam.features import message_features
from spam.lists import LOOKUP_CACHE_SECONDS, ListKind, SenderLists
from spam.model import Reason, SpamModel
from spam.parsing import parse_message
from spam.registry import ModelRegistry

log = logging.getLogger(__name__)

#: Features listed in an explanation.
REASONS_SHOWN = 5


class Verdict(enum.StrEnum):
    """Where a message goes: the inbox (ham) or the junk folder (spam)."""

    HAM = "ham"
    SPAM = "spam"


class DecidedBy(enum.StrEnum):
    """What made the verdict."""

    MODEL = "model"
    ALLOW_LIST = "allow_list"
    BLOCK_LIST = "block_list"


_LIST_REASONS = {
    DecidedBy.ALLOW_LIST: Reason("l'expéditeur figure dans vos expéditeurs autorisés", "list:allow", 0.0),
    DecidedBy.BLOCK_LIST: Reason("l'expéditeur figure dans vos expéditeurs bloqués", "list:block", 0.0),
}


@dataclass(frozen=True)
class Classification:
    """The verdict on one message for one recipient."""

    score: float
    verdict: Verdict
    model_version: str
    threshold: float
    decided_by: DecidedBy = DecidedBy.MODEL
    reasons: list[Reason] = field(default_factory=list)
    analysed_chars: int = 0
    truncated: bool = False

    @property
    def is_spam(self) -> bool:
        """True when the message goes to the junk folder."""
        return self.verdict is Verdict.SPAM

    def as_event(self) -> dict[str, Any]:
        """The JSON-able payload of `mail.classified` (ids and envelope are added by the service)."""
        return {
            "score": round(self.score, 6),
            "verdict": str(self.verdict),
            "model_version": self.model_version,
            "threshold": round(self.threshold, 6),
            "decided_by": str(self.decided_by),
            "reasons": [reason.as_dict() for reason in self.reasons],
        }


class SpamClassifier:
    """Scores messages with the active model and applies each recipient's sender lists."""

    def __init__(
        self,
        model: SpamModel | None = None,
        registry: ModelRegistry | None = None,
        lists: SenderLists | None = None,
        threshold: float | None = None,
        poll_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if model is None and registry is None:
            raise ValueError("a SpamClassifier needs a model or a registry to load one from")
        self.registry = registry
        self.lists = lists
        self._threshold = threshold or None
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._model = model if model is not None else registry.load_active()
        self._checked_at = clock()

    @classmethod
    def from_database(cls, db: Database) -> SpamClassifier:
        """A classifier on the active model of the database, with its sender lists and settings."""
        from common.config import get_settings

        settings = get_settings()
        registry = ModelRegistry(db)
        registry.ensure_indexes()
        lists = SenderLists(db, cache_seconds=LOOKUP_CACHE_SECONDS)
        lists.ensure_indexes()
        return cls(
            registry=registry,
            lists=lists,
            threshold=settings.spam_threshold or None,
            poll_seconds=settings.spam_model_poll_seconds,
        )

    @property
    def model(self) -> SpamModel:
        """The model in use."""
        return self._model

    @property
    def threshold(self) -> float:
        """Score from which a message is spam: SPAM_THRESHOLD when set, else the model's own."""
        return self._threshold or self._model.threshold

    def use(self, model: SpamModel) -> None:
        """Score with `model` from now on."""
        self._model = model

    def refresh(self, force: bool = False) -> bool:
        """Reload the model if another version became active; True when it changed."""
        if self.registry is None:
            return False
        now = self._clock()
        if not force and now - self._checked_at < self._poll_seconds:
            return False
        with self._lock:
            self._checked_at = now
            version = self.registry.active_version()
            if version is None or version == self._model.version:
                return False
            self._model = self.registry.load(version)
        log.info("spam model reloaded", extra={"version": version})
        return True

    def classify(self, raw: bytes, recipient: str | None = None, sender: str | None = None) -> Classification:
        """The verdict on raw message bytes for `recipient`; `sender` defaults to the From address."""
        return self.classify_many(raw, [recipient] if recipient else [None], sender)[recipient]

    def classify_many(
        self,
        raw: bytes,
        recipients: Sequence[str | None],
        sender: str | None = None,
        *,
        explain_ham: bool = True,
    ) -> dict[str | None, Classification]:
        """Verdicts for several recipients of one message: parsed and scored once, lists applied each.

        With `explain_ham=False`, a ham verdict carries no reasons (only the junk folder shows them): the
        pipeline's spam stage does not compute what nobody reads.
        """
        self.refresh()
        model = self._model
        parsed = parse_message(raw)
        analysis = model.analyse(message_features(parsed, model.feature_params))
        score = analysis.score
        threshold = self.threshold
        model_verdict = Verdict.SPAM if score >= threshold else Verdict.HAM
        explanations: dict[Verdict, list[Reason]] = {}  # per verdict given, computed once when first needed
        results: dict[str | None, Classification] = {}
        for recipient in recipients:
            verdict, decided_by = model_verdict, DecidedBy.MODEL
            listed = None
            if self.lists is not None and recipient:
                listed = self.lists.lookup(recipient, sender or parsed.from_address)
            if listed is ListKind.BLOCK:
                verdict, decided_by = Verdict.SPAM, DecidedBy.BLOCK_LIST
            elif listed is ListKind.ALLOW:
                verdict, decided_by = Verdict.HAM, DecidedBy.ALLOW_LIST
            reasons: list[Reason] = []
            if explain_ham or verdict is Verdict.SPAM:
                reasons = explanations.get(verdict)
                if reasons is None:
                    reasons = explanations[verdict] = analysis.reasons(
                        spam=verdict is Verdict.SPAM, limit=REASONS_SHOWN
                    )
                if decided_by is not DecidedBy.MODEL:
                    reasons = [_LIST_REASONS[decided_by], *reasons[: REASONS_SHOWN - 1]]
            results[recipient] = Classification(
                score=score,
                verdict=verdict,
                model_version=model.version,
                threshold=threshold,
                decided_by=decided_by,
                reasons=reasons,
                analysed_chars=parsed.analysed_chars,
                truncated=parsed.truncated,
            )
        return results
