"""Domain errors of the directory. Each carries a French message that can be shown to its reader."""

from __future__ import annotations


class DirectoryError(Exception):
    """Base of the directory's domain errors; `str(error)` is French text for the user or operator."""


class InvalidInput(DirectoryError):
    """A value typed by someone is malformed or impossible."""


class NotFound(DirectoryError):
    """No account, alias or establishment by that name."""


class Conflict(DirectoryError):
    """The request contradicts the current state (e.g. an alias already taken)."""


class PolicyViolation(DirectoryError):
    """A new password does not satisfy the policy; `problems` lists why, in French."""

    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems
