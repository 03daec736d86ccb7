"""A spam model: a linear scorer over hashed features, its calibration, threshold and metadata.

The model is a weight vector over the `N_FEATURES` hashed columns plus an intercept; its raw margin
`w·x + b` is mapped to a score in [0, 1] by a Platt calibration fitted on cross-validated predictions, and a
message is spam when its score reaches the model's threshold (chosen on the cross-validation so that at
most 0.1 % of ham would be caught). Being linear makes three things cheap: scoring (one sparse dot
product), explaining (each feature's contribution is its weight times its value) and learning from one
report (`update`, a bounded logistic-gradient step).

An artifact is one compressed `.npz` (no pickle: loading an artifact cannot run code) holding the non-zero
weights, the intercept and a JSON metadata block (feature parameters, training parameters, corpus hash,
metrics, seed, creation time, parent version).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from spam.features import FeatureParams, Featurizer, describe

ARTIFACT_FORMAT = 1


@dataclass(frozen=True)
class Reason:
    """One feature that weighed in a verdict: its French label, its name and its contribution."""

    label: str
    feature: str
    weight: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, as published in events."""
        return {"label": self.label, "feature": self.feature, "weight": round(self.weight, 4)}


@dataclass(frozen=True)
class Analysis:
    """One message as the model sees it: its score and what each of its features contributed."""

    score: float
    names: list[str]
    contributions: np.ndarray

    def reasons(self, spam: bool, limit: int = 5) -> list[Reason]:
        """The features that pushed most towards spam (or towards ham), labelled in French."""
        signed = self.contributions if spam else -self.contributions
        if not signed.size:
            return []
        count = min(limit, signed.size)
        top = np.argpartition(-signed, count - 1)[:count]
        top = top[np.argsort(-signed[top])]
        return [
            Reason(label=describe(self.names[i]), feature=self.names[i], weight=float(self.contributions[i]))
            for i in top
            if signed[i] > 0
        ]


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


@dataclass
class SpamModel:
    """A trained (possibly feedback-updated) linear spam model."""

    coef: np.ndarray
    intercept: float
    feature_params: FeatureParams = field(default_factory=FeatureParams)
    calibration: tuple[float, float] = (1.0, 0.0)  # score = sigmoid(a * margin + b)
    threshold: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def __post_init__(self) -> None:
        self.coef = np.asarray(self.coef, dtype=np.float64).ravel()
        if self.coef.size != self.feature_params.n_features:
            raise ValueError(f"{self.coef.size} weights for {self.feature_params.n_features} features")
        self.featurizer = Featurizer(self.feature_params)

    # --- scoring ------------------------------------------------------------------------------------
    def margins(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Raw margins `w·x + b` of hashed rows."""
        return matrix @ self.coef + self.intercept

    def calibrate(self, margins: np.ndarray | float) -> np.ndarray:
        """Scores in [0, 1] for raw margins."""
        a, b = self.calibration
        z = np.clip(a * np.asarray(margins, dtype=np.float64) + b, -500, 500)
        return 1.0 / (1.0 + np.exp(-z))

    def margin_of(self, features: dict[str, float]) -> float:
        """The raw margin of one message's named features (no sparse matrix: the fast path)."""
        if not features:
            return self.intercept
        columns = self.featurizer.columns(list(features))
        values = np.fromiter(features.values(), dtype=np.float64, count=len(features))
        return float(np.dot(self.coef[columns], values)) + self.intercept

    def score_features(self, features: dict[str, float]) -> float:
        """The score of one message's named features."""
        a, b = self.calibration
        return _sigmoid(a * self.margin_of(features) + b)

    def score(self, raw: bytes) -> float:
        """The score of one raw message."""
        return self.score_features(self.featurizer.features(raw))

    def scores(self, raws: list[bytes]) -> np.ndarray:
        """Scores of many raw messages."""
        return self.calibrate(self.margins(self.featurizer.transform(raws)))

    # --- explanation --------------------------------------------------------------------------------
    def analyse(self, features: dict[str, float]) -> Analysis:
        """Score and per-feature contributions of one message, hashing its features once."""
        names = list(features)
        columns = self.featurizer.columns(names)
        values = np.fromiter(features.values(), dtype=np.float64, count=len(names))
        contributions = self.coef[columns] * values
        a, b = self.calibration
        score = _sigmoid(a * (float(contributions.sum()) + self.intercept) + b)
        return Analysis(score=score, names=names, contributions=contributions)

    def contributions(self, features: dict[str, float]) -> list[tuple[str, float]]:
        """Each named feature with its contribution to the margin, largest magnitude first."""
        analysis = self.analyse(features)
        order = np.argsort(-np.abs(analysis.contributions))
        return [(analysis.names[i], float(analysis.contributions[i])) for i in order]

    def explain(self, features: dict[str, float], spam: bool, limit: int = 5) -> list[Reason]:
        """The features that pushed most towards the verdict (towards spam when `spam`), in French."""
        return self.analyse(features).reasons(spam, limit)

    # --- learning from one report -------------------------------------------------------------------
    def update(
        self, features: dict[str, float], label: int, step: float, max_norm: float | None = None
    ) -> float:
        """One logistic-gradient step towards `label` (1 spam, 0 ham) of size `step`; returns its L2 norm.

        The change is `step * (label - p) * x`, clipped so that its norm is at most `max_norm`. Only the
        weights of the message's own features move, and a message already scored confidently right moves
        them little (the `label - p` factor).
        """
        row = self.featurizer.hash([features])
        if row.nnz == 0 or step <= 0:
            return 0.0
        margin = float(self.margins(row)[0])
        gradient = label - _sigmoid(margin)
        delta = step * gradient * row.data
        norm = float(np.sqrt(np.dot(delta, delta)))
        if max_norm is not None and norm > max_norm:
            delta *= max_norm / norm if norm else 0.0
            norm = max_norm
        np.add.at(self.coef, row.indices, delta)
        return norm

    def copy(self) -> SpamModel:
        """An independent copy (updates to it leave this model alone)."""
        return SpamModel(
            coef=self.coef.copy(),
            intercept=self.intercept,
            feature_params=self.feature_params,
            calibration=self.calibration,
            threshold=self.threshold,
            metadata=copy.deepcopy(self.metadata),
            version=self.version,
        )

    # --- artifact -----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The artifact: a compressed npz with the non-zero weights and a JSON metadata block."""
        nonzero = np.flatnonzero(self.coef).astype(np.int64)
        header = {
            "format": ARTIFACT_FORMAT,
            "version": self.version,
            "intercept": self.intercept,
            "feature_params": self.feature_params.as_dict(),
            "calibration": list(self.calibration),
            "threshold": self.threshold,
            "metadata": self.metadata,
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            indices=nonzero,
            values=self.coef[nonzero],
            header=np.frombuffer(json.dumps(header, sort_keys=True, default=str).encode(), dtype=np.uint8),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SpamModel:
        """Load an artifact written by `to_bytes` (never unpickles anything)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes().decode())
            if header.get("format") != ARTIFACT_FORMAT:
                raise ValueError(f"unsupported spam model format {header.get('format')!r}")
            params = FeatureParams(**header["feature_params"])
            coef = np.zeros(params.n_features, dtype=np.float64)
            coef[archive["indices"]] = archive["values"]
        return cls(
            coef=coef,
            intercept=float(header["intercept"]),
            feature_params=params,
            calibration=tuple(header["calibration"]),
            threshold=float(header["threshold"]),
            metadata=header["metadata"],
            version=header["version"],
        )


def new_version(model: SpamModel, now: dt.datetime | None = None) -> str:
    """A fresh, sortable version name: creation time plus a digest of the weights."""
    now = now or dt.datetime.now(dt.UTC)
    digest = hashlib.sha256(model.coef.tobytes() + repr(model.intercept).encode()).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%S}Z-{digest}"
