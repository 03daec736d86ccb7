"""Domain errors of the spam service."""

from __future__ import annotations


class SpamError(Exception):
    """Base class of the spam service's errors."""


class CorpusUnavailable(SpamError):
    """The training corpus is not cached and could not be fetched (no registry, wrong checksum…)."""


class ModelNotFound(SpamError):
    """No model version matches (unknown version, or no active version yet)."""


class InvalidFeedback(SpamError):
    """A user's report cannot be recorded (unknown label, empty user…)."""
