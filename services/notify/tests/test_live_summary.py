"""notify takes the list fields of a new entry from `mail.delivered`'s summary when it has one."""

from __future__ import annotations

import datetime as dt

from notify.service import _entry_of_summary


def test_a_summary_gives_the_fields_the_entry_would_give():
    summary = {
        "from": {"name": "Camille Martin", "address": "camille.martin@ac-montpellier.fr"},
        "subject": "Conseil de classe",
        "snippet": "Bonjour",
        "has_attachments": False,
        "received_at": "2026-11-26T19:40:00.123000+00:00",
    }
    entry = _entry_of_summary(summary)
    assert entry["received_at"] == dt.datetime(2026, 11, 26, 19, 40, 0, 123000, tzinfo=dt.UTC)
    assert str(entry["received_at"]) == "2026-11-26 19:40:00.123000+00:00"  # as a stored entry prints
    assert {k: entry[k] for k in ("from", "subject", "snippet", "has_attachments")} == {
        k: summary[k] for k in ("from", "subject", "snippet", "has_attachments")
    }


def test_no_summary_or_a_broken_one_means_reading_the_entry():
    assert _entry_of_summary(None) is None
    assert _entry_of_summary({"subject": "x"}) is None
    assert _entry_of_summary({"received_at": "hier"}) is None
