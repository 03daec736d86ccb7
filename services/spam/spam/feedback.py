"""Learning from users' reports, within limits that keep one account from poisoning the shared model.

"Signaler comme indésirable" and "Ce n'est pas un indésirable" become `FeedbackLearner.record(...)` calls.
Each report:

1. is stored once per (user, message fingerprint) in `spam_feedback` (a unique index: reporting the same
   message again changes nothing; changing one's mind updates the label but does not train twice). The
   fingerprint hashes the message's text features, so copies of one mail sent to many people match;
2. updates the reporter's own sender lists (spam → block list, not spam → allow list), which take effect
   for that user at once and for nobody else;
3. moves the shared model by one logistic-gradient step, bounded four ways:
   - weight by agreement: a report weighs (agreeing users − disagreeing users) / SPAM_FEEDBACK_QUORUM,
     at most 1, so a message reported by one person counts a third and a disputed one not at all;
   - a daily cap: past SPAM_FEEDBACK_DAILY_CAP counted reports in a UTC day, a user's reports still update
     their lists but no longer train the model;
   - a budget: the L2 norm of all model changes caused by one user over the last BUDGET_WINDOW_DAYS is
     at most SPAM_FEEDBACK_USER_BUDGET; each step is clipped to what is left. Since features are
     L2-normalised (norm about 1), one user can move any message's margin by about that budget at most,
     while confident verdicts sit several units away from the threshold;
   - the step size SPAM_FEEDBACK_LEARNING_RATE, and the `label − p` factor of the gradient, which is small
     when the model already agrees.

The step is applied at once to the in-process model (so the reporter's next similar mail already scores
differently); `publish()` — run on a schedule or by `python -m spam.admin publish-feedback` — replays the
counted reports on the active version, stores the result as a new version and activates it for every
worker. `consensus_samples()` gives the reports with full agreement, which `admin retrain` adds to the
corpus for a scheduled retraining from scratch.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from bson.binary import Binary
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.db import ensure_indexes, utcnow
from spam.classifier import SpamClassifier
from spam.exceptions import InvalidFeedback
from spam.features import message_features
from spam.lists import ListKind, SenderLists, normalise_address
from spam.model import SpamModel, new_version
from spam.parsing import MAX_RAW_BYTES, parse_message
from spam.registry import ModelRegistry
from spam.training import LabelledMessage

log = logging.getLogger(__name__)

COLLECTION = "spam_feedback"
#: Window over which a user's influence budget is counted.
BUDGET_WINDOW_DAYS = 30

INDEXES = {
    COLLECTION: [
        IndexModel([("user", ASCENDING), ("fingerprint", ASCENDING)], unique=True, name="user_fingerprint"),
        IndexModel([("fingerprint", ASCENDING), ("label", ASCENDING)], name="fingerprint_label"),
        IndexModel([("user", ASCENDING), ("day", ASCENDING), ("counted", ASCENDING)], name="user_day"),
        IndexModel([("counted", ASCENDING), ("applied_version", ASCENDING)], name="pending"),
    ],
}


class Label(enum.StrEnum):
    """What the user says the message is."""

    SPAM = "spam"  # "Signaler comme indésirable"
    HAM = "ham"  # "Ce n'est pas un indésirable"


class Outcome(enum.StrEnum):
    """What a report did to the shared model."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    DAILY_CAP = "daily_cap"
    BUDGET_SPENT = "budget_spent"
    DISPUTED = "disputed"


@dataclass(frozen=True)
class FeedbackLimits:
    """The bounds on what reports may do to the shared model (defaults from the SPAM_FEEDBACK_* settings)."""

    daily_cap: int = 50
    quorum: int = 3
    learning_rate: float = 0.5
    user_budget: float = 2.0

    @classmethod
    def from_settings(cls) -> FeedbackLimits:
        """The limits configured in the environment."""
        from common.config import get_settings

        settings = get_settings()
        return cls(
            daily_cap=settings.spam_feedback_daily_cap,
            quorum=max(1, settings.spam_feedback_quorum),
            learning_rate=settings.spam_feedback_learning_rate,
            user_budget=settings.spam_feedback_user_budget,
        )


@dataclass(frozen=True)
class FeedbackResult:
    """What one report did."""

    outcome: Outcome
    fingerprint: str
    weight: float = 0.0
    change: float = 0.0
    agreeing_users: int = 0
    listed: ListKind | None = None


def fingerprint(features: dict[str, float], raw: bytes) -> str:
    """Identifies a message by its text (so copies with other headers match), else by its bytes."""
    text = sorted(token for token in features if token[:2] in ("w:", "s:"))
    digest = hashlib.sha256("\n".join(text).encode() if text else raw[:MAX_RAW_BYTES])
    return digest.hexdigest()[:32]


class FeedbackLearner:
    """Records users' reports, updates their sender lists and, within limits, the shared model."""

    def __init__(
        self,
        db: Database,
        classifier: SpamClassifier,
        registry: ModelRegistry | None = None,
        lists: SenderLists | None = None,
        limits: FeedbackLimits | None = None,
    ):
        self.collection = db[COLLECTION]
        self.classifier = classifier
        self.registry = registry or classifier.registry
        self.lists = lists or classifier.lists or SenderLists(db)
        self.limits = limits or FeedbackLimits.from_settings()

    def ensure_indexes(self) -> None:
        """Create the feedback collection's indexes (idempotent)."""
        ensure_indexes(self.collection.database, INDEXES)

    # --- recording ----------------------------------------------------------------------------------
    def record(
        self,
        user: str,
        raw: bytes,
        label: Label | str,
        sender: str | None = None,
        now: dt.datetime | None = None,
    ) -> FeedbackResult:
        """Record `user`'s report that `raw` is spam or not, and learn from it within the limits."""
        user = normalise_address(user)
        if not user:
            raise InvalidFeedback("a report needs the reporting user")
        try:
            label = Label(label)
        except ValueError:
            raise InvalidFeedback(f"unknown label {label!r}: expected 'spam' or 'ham'") from None
        now = now or utcnow()
        model = self.classifier.model
        parsed = parse_message(raw)
        features = message_features(parsed, model.feature_params)
        print_ = fingerprint(features, raw)
        sender = normalise_address(sender or parsed.from_address)
        listed = None
        if sender:
            listed = ListKind.BLOCK if label is Label.SPAM else ListKind.ALLOW
            self.lists.set(user, sender, listed)

        document = {
            "user": user,
            "fingerprint": print_,
            "label": str(label),
            "sender": sender,
            "created_at": now,
            "day": now.strftime("%Y-%m-%d"),
            "raw": Binary(raw[:MAX_RAW_BYTES]),
            "counted": False,
            "weight": 0.0,
            "change": 0.0,
            "applied_version": None,
        }
        try:
            inserted = self.collection.insert_one(document).inserted_id
        except DuplicateKeyError:
            # Same user, same message: a change of mind updates the label, nothing trains twice.
            self.collection.update_one({"user": user, "fingerprint": print_}, {"$set": {"label": str(label)}})
            return FeedbackResult(Outcome.DUPLICATE, print_, listed=listed)

        agreeing = self.collection.count_documents({"fingerprint": print_, "label": str(label)})
        other = Label.HAM if label is Label.SPAM else Label.SPAM
        disagreeing = self.collection.count_documents({"fingerprint": print_, "label": str(other)})
        result = self._learn(user, inserted, features, label, agreeing, disagreeing, model, now)
        log.info(
            "spam feedback recorded",
            extra={"label": str(label), "outcome": str(result.outcome), "weight": result.weight},
        )
        return FeedbackResult(result.outcome, print_, result.weight, result.change, agreeing, listed=listed)

    def _learn(
        self,
        user: str,
        document_id: Any,
        features: dict[str, float],
        label: Label,
        agreeing: int,
        disagreeing: int,
        model: SpamModel,
        now: dt.datetime,
    ) -> FeedbackResult:
        limits = self.limits
        day = now.strftime("%Y-%m-%d")
        counted_today = self.collection.count_documents({"user": user, "day": day, "counted": True})
        if counted_today >= limits.daily_cap:
            return FeedbackResult(Outcome.DAILY_CAP, "")
        remaining = limits.user_budget - self.spent(user, now)
        if remaining <= 1e-9:
            return FeedbackResult(Outcome.BUDGET_SPENT, "")
        weight = min(1.0, max(0, agreeing - disagreeing) / limits.quorum)
        if weight <= 0:
            return FeedbackResult(Outcome.DISPUTED, "")
        target = 1 if label is Label.SPAM else 0
        change = model.update(features, target, limits.learning_rate * weight, max_norm=remaining)
        self.collection.update_one(
            {"_id": document_id},
            {"$set": {"counted": True, "weight": weight, "change": change, "model_version": model.version}},
        )
        return FeedbackResult(Outcome.COUNTED, "", weight, change)

    def spent(self, user: str, now: dt.datetime | None = None) -> float:
        """L2 norm of the model changes `user` caused over the budget window (sum of step norms)."""
        since = (now or utcnow()) - dt.timedelta(days=BUDGET_WINDOW_DAYS)
        rows = list(
            self.collection.aggregate(
                [
                    {
                        "$match": {
                            "user": normalise_address(user),
                            "counted": True,
                            "created_at": {"$gte": since},
                        }
                    },
                    {"$group": {"_id": None, "spent": {"$sum": "$change"}}},
                ]
            )
        )
        return float(rows[0]["spent"]) if rows else 0.0

    # --- sharing with every worker ------------------------------------------------------------------
    def publish(self, activate: bool = True) -> str | None:
        """Fold the counted, not yet published reports into a new model version; returns it (or None)."""
        if self.registry is None:
            raise InvalidFeedback("publishing feedback needs a model registry")
        pending = list(
            self.collection.find({"counted": True, "applied_version": None}).sort("created_at", ASCENDING)
        )
        if not pending:
            return None
        base = self.registry.load_active().copy()
        parent = base.version
        for document in pending:
            features = message_features(parse_message(bytes(document["raw"])), base.feature_params)
            target = 1 if document["label"] == Label.SPAM else 0
            base.update(
                features,
                target,
                self.limits.learning_rate * document["weight"],
                max_norm=document["change"],
            )
        base.metadata["parent"] = parent
        base.metadata["feedback_reports"] = int(base.metadata.get("feedback_reports", 0)) + len(pending)
        base.metadata["created_at"] = utcnow().isoformat(timespec="seconds")
        base.version = new_version(base)
        self.registry.publish(base, kind="feedback", parent=parent)
        self.collection.update_many(
            {"_id": {"$in": [document["_id"] for document in pending]}},
            {"$set": {"applied_version": base.version}},
        )
        if activate:
            self.registry.activate(base.version)
            self.classifier.use(base)
        return base.version

    # --- retraining and operators -------------------------------------------------------------------
    def consensus_samples(self) -> list[LabelledMessage]:
        """One sample per message on which at least a quorum of users agree (net of disagreement)."""
        votes: dict[str, dict[str, int]] = {}
        rows = self.collection.aggregate(
            [{"$group": {"_id": {"fingerprint": "$fingerprint", "label": "$label"}, "users": {"$sum": 1}}}]
        )
        for row in rows:
            votes.setdefault(row["_id"]["fingerprint"], {})[row["_id"]["label"]] = row["users"]
        samples = []
        for print_, counts in votes.items():
            spam, ham = counts.get(Label.SPAM, 0), counts.get(Label.HAM, 0)
            if abs(spam - ham) < self.limits.quorum:
                continue
            label = Label.SPAM if spam > ham else Label.HAM
            document = self.collection.find_one({"fingerprint": print_, "label": str(label)}, {"raw": 1})
            if document is not None:
                samples.append(
                    LabelledMessage(bytes(document["raw"]), 1 if label is Label.SPAM else 0, group="feedback")
                )
        return samples

    def stats(self) -> dict[str, Any]:
        """Counts for operators: reports by label and outcome, pending ones, reporters, top reporters."""
        by_label = {
            row["_id"]: row["n"]
            for row in self.collection.aggregate([{"$group": {"_id": "$label", "n": {"$sum": 1}}}])
        }
        top = list(
            self.collection.aggregate(
                [
                    {"$group": {"_id": "$user", "reports": {"$sum": 1}, "change": {"$sum": "$change"}}},
                    {"$sort": {"reports": -1}},
                    {"$limit": 10},
                ]
            )
        )
        return {
            "reports": self.collection.count_documents({}),
            "by_label": by_label,
            "counted": self.collection.count_documents({"counted": True}),
            "pending_publication": self.collection.count_documents(
                {"counted": True, "applied_version": None}
            ),
            "reporters": len(self.collection.distinct("user")),
            "top_reporters": [
                {"user": row["_id"], "reports": row["reports"], "change": round(row["change"], 4)}
                for row in top
            ],
        }
