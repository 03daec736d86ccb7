"""Dates in French, in the academy's time zone (Europe/Paris), as the webmail's pages and mails say them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
MONTHS_SHORT = (
    "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc.",
)  # fmt: skip
DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


def paris(moment: dt.datetime | None) -> dt.datetime | None:
    """`moment` in Paris time (a naive datetime is taken as UTC, as BSON returns them)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(PARIS)


def day(moment: dt.date) -> str:
    """ "jeudi 26 novembre 2026", for a date or a datetime as it is (no time-zone conversion)."""
    return f"{DAYS[moment.weekday()]} {moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def long_date(moment: dt.datetime | None, unknown: str = "") -> str:
    """ "jeudi 26 novembre 2026 à 14:05" in Paris time; `unknown` when there is no date."""
    local = paris(moment)
    if local is None:
        return unknown
    return f"{day(local)} à {local:%H:%M}"


def short_date(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """ "14:05" today, "26 nov." this year, "26/11/2024" before, in Paris time."""
    local = paris(moment)
    if local is None:
        return ""
    today = paris(now or dt.datetime.now(dt.UTC))
    if local.date() == today.date():
        return local.strftime("%H:%M")
    if local.year == today.year:
        return f"{local.day} {MONTHS_SHORT[local.month - 1]}"
    return local.strftime("%d/%m/%Y")
