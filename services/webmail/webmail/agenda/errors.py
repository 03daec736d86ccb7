"""Errors of the agenda library.

Every error carries a French message meant for the person using the calendar (`str(error)` and
`error.message`); `problems` lists each thing wrong with an imported file or an invalid event, also in
French, so that a page can show all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterable


class AgendaError(Exception):
    """Base class: something the user asked for cannot be done; the message says why, in French."""

    def __init__(self, message: str, problems: Iterable[str] = ()):
        self.message = message
        self.problems = list(problems)
        super().__init__(message if not self.problems else f"{message} " + " ; ".join(self.problems))


class EventNotFound(AgendaError):
    """No event with that id in this user's calendar (also what another user's id gives)."""

    def __init__(self, message: str = "Événement introuvable dans votre agenda."):
        super().__init__(message)


class OccurrenceNotFound(AgendaError):
    """The series has no occurrence at the given recurrence id."""

    def __init__(self, message: str = "Cette occurrence n'existe pas dans la série."):
        super().__init__(message)


class InvalidEvent(AgendaError):
    """An event's data is wrong (dates, repetition rule, reminders…)."""


class EditConflict(AgendaError):
    """The event changed between reading and writing it."""

    def __init__(
        self, message: str = "L'événement a été modifié entre-temps : rechargez-le puis recommencez."
    ):
        super().__init__(message)


class RangeTooLarge(AgendaError):
    """A range query asks for too long a period."""


class TooManyOccurrences(AgendaError):
    """A range query would return more occurrences than the limit."""


class CalendarImportError(AgendaError):
    """An `.ics` file cannot be imported; nothing of it was written. `problems` lists what is wrong."""


class ItipError(AgendaError):
    """An invitation or a reply (iTIP/iMIP) is malformed, or may not be applied."""


class ExternalItip(ItipError):
    """An invitation or a reply comes from outside the academy and needs the user's explicit consent."""
