"""delivery's quota view (read once per few seconds, raised by its own deliveries) and the summary it
puts in `mail.delivered` for notify."""

from __future__ import annotations

import datetime as dt

from delivery.service import SUMMARY_MAX_CHARS, QuotaView, live_summary


class FakeMailboxes:
    def __init__(self, documents):
        self.documents = documents
        self.reads = 0

    def find_one(self, query, projection=None):
        self.reads += 1
        return self.documents.get(query["_id"])


class FakeDatabase:
    def __init__(self, documents):
        self.mailboxes = FakeMailboxes(documents)


def test_the_quota_view_reads_a_mailbox_once_per_ttl_and_counts_its_own_deliveries():
    now = [0.0]
    db = FakeDatabase({"a@x": {"_id": "a@x", "used_bytes": 900, "quota_bytes": 1000}})
    view = QuotaView(db, default_quota=10_000, ttl=2, clock=lambda: now[0])
    assert view.full(["a@x", "b@x"], 50) == set()
    view.added([{"mailbox": "a@x", "size": 60}, {"mailbox": "b@x", "size": 60}])
    assert view.full(["a@x", "b@x"], 50) == {"a@x"}  # 900 + 60 + 50 > 1000, from the cache
    assert db.mailboxes.reads == 2
    db.mailboxes.documents["a@x"]["used_bytes"] = 0  # the user deleted mail
    now[0] = 2.5
    assert view.full(["a@x"], 50) == set()
    assert db.mailboxes.reads == 3


def test_the_summary_is_what_the_entry_shows_and_is_left_out_when_too_long():
    entry = {
        "from": {"name": "Camille Martin", "address": "camille.martin@ac-montpellier.fr"},
        "subject": "Conseil de classe",
        "snippet": "Bonjour à tous",
        "has_attachments": True,
        "received_at": dt.datetime(2026, 11, 26, 19, 40, 0, 123000, tzinfo=dt.UTC),
    }
    summary = live_summary(entry)
    assert summary == {**entry, "received_at": "2026-11-26T19:40:00.123000+00:00"}
    assert dt.datetime.fromisoformat(summary["received_at"]) == entry["received_at"]
    assert live_summary({**entry, "from": None})["from"] is None
    assert live_summary({**entry, "subject": "x" * SUMMARY_MAX_CHARS}) is None
