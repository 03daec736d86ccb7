"""The mailbox data access against the real database: scoping, listing, flags, moves, folders, search."""

from __future__ import annotations

import datetime as dt

import pytest

from common import mailstore
from common.db import BlobStore
from webmail.mailbox import FolderError, FolderTotals, Mailbox

pytestmark = pytest.mark.integration

A = "camille.martin@ac-montpellier.fr"
B = "louis.garcia@ac-montpellier.fr"
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def make_entry(db, mailbox, n, folder="INBOX", subject=None, sender=None, body="Bonjour", size=None, **extra):
    """Store a message and its entry the way delivery does; returns the entry id."""
    subject = subject or f"Message {n}"
    name, address = sender or (f"Expéditeur {n}", f"exp{n}@example.org")
    raw = (
        f"From: {name} <{address}>\r\nTo: {mailbox}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{n}.{mailbox}@test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    message_id = f"m-{mailbox}-{n}"
    BlobStore(db).put(message_id, raw)
    summary = mailstore.summarize(raw).to_document()
    entry = {
        **summary,
        "_id": mailstore.entry_id(message_id, mailbox, "rcpt"),
        "message_id": message_id,
        "mailbox": mailbox,
        "folder": folder,
        "size": size if size is not None else len(raw),
        "received_at": T0 + dt.timedelta(hours=n),
        "envelope_from": address,
        "flags": {"seen": False, "flagged": False, "answered": False},
        **extra,
    }
    mailstore.insert_entries(db, [entry])
    mailstore.add_usage(db, [entry])
    return entry["_id"]


def test_a_user_cannot_read_move_flag_or_delete_another_mailbox_entries(database):
    theirs = make_entry(database, B, 1)
    mine = Mailbox(database, A)
    assert mine.entry(theirs) is None
    assert mine.set_flags([theirs], seen=True, flagged=True) == 0
    assert mine.move([theirs], "Trash") == 0
    assert mine.delete([theirs]) == (0, 0)
    assert mine.report([theirs], "spam") == []
    mine.create_folder("Projets")
    assert mine.restore([theirs]) == 0
    doc = database.mailbox_entries.find_one({"_id": theirs})
    assert doc["folder"] == "INBOX" and doc["flags"] == {"seen": False, "flagged": False, "answered": False}
    assert Mailbox(database, B).entry(theirs)["_id"] == theirs
    with pytest.raises(PermissionError):
        mine.raw(doc)
    # nothing of B's shows in A's lists, counts or searches
    assert mine.page("INBOX") == ([], 0)
    assert mine.search(text="Message") == ([], 0)
    assert all(f.total == 0 for f in mine.folders(totals=True))


def test_paging_and_sorting(database):
    for n in range(7):
        make_entry(database, A, n, subject=f"Sujet {chr(ord('g') - n)}", size=1000 + (n * 37) % 5)
    box = Mailbox(database, A)
    first, total = box.page("INBOX", page=1, page_size=3)
    assert total == 7
    assert [e["subject"] for e in first] == ["Sujet a", "Sujet b", "Sujet c"]  # newest first
    last, _ = box.page("INBOX", page=3, page_size=3)
    assert [e["subject"] for e in last] == ["Sujet g"]
    by_subject, _ = box.page("INBOX", sort="objet", order="asc", page_size=10)
    assert [e["subject"] for e in by_subject] == [f"Sujet {c}" for c in "abcdefg"]
    by_size, _ = box.page("INBOX", sort="taille", order="desc", page_size=10)
    sizes = [e["size"] for e in by_size]
    assert sizes == sorted(sizes, reverse=True)
    by_sender, _ = box.page("INBOX", sort="expediteur", order="asc", page_size=10)
    assert [e["from"]["address"] for e in by_sender] == sorted(f"exp{n}@example.org" for n in range(7))
    # list rows carry no heavy field
    assert "search_text" not in first[0] and "message_id" not in first[0] and "to" not in first[0]


def test_flags_and_counts(database):
    ids = [make_entry(database, A, n) for n in range(3)]
    make_entry(database, A, 9, folder="Junk")
    box = Mailbox(database, A)
    assert box.set_flags(ids[:2], seen=True) == 2
    assert box.set_flags([ids[2]], flagged=True) == 1
    folders = {f.id: f for f in box.folders(totals=True)}
    assert (folders["INBOX"].unread, folders["INBOX"].total) == (1, 3)
    assert (folders["Junk"].unread, folders["Junk"].total) == (1, 1)
    assert folders["Trash"].total == 0
    assert [f.label for f in box.folders()][:6] == [
        "Boîte de réception",
        "Envoyés",
        "Brouillons",
        "Indésirables",
        "Quarantaine",
        "Corbeille",
    ]
    assert box.entry(ids[2])["flags"]["flagged"] is True
    box.mark_read(box.entry(ids[2]))
    assert box.unread_count("INBOX") == 0


def test_delete_goes_to_trash_then_for_good_and_frees_quota(database):
    ids = [make_entry(database, A, n, size=500) for n in range(2)]
    box = Mailbox(database, A)
    assert database.mailboxes.find_one({"_id": A})["used_bytes"] == 1000
    assert box.delete([ids[0]]) == (1, 0)
    entry = box.entry(ids[0])
    assert entry["folder"] == "Trash" and entry["trashed_from"] == "INBOX"
    assert box.restore([ids[0]]) == 1
    assert box.entry(ids[0])["folder"] == "INBOX"
    box.delete(ids)
    assert box.delete(ids) == (0, 2)
    assert box.entry(ids[0]) is None and box.entry(ids[1]) is None
    assert database.mailboxes.find_one({"_id": A})["used_bytes"] == 0


def test_restore_returns_to_the_original_folder(database):
    entry_id = make_entry(database, A, 1)
    box = Mailbox(database, A)
    folder = box.create_folder("Conseils de classe")
    assert box.move([entry_id], folder) == 1
    box.delete([entry_id])
    assert box.restore([entry_id]) == 1
    assert box.entry(entry_id)["folder"] == folder


def test_own_folders(database):
    box = Mailbox(database, A)
    projets = box.create_folder("Projets")
    box.create_folder("Inspection")
    assert [f["name"] for f in box.own_folders()] == ["Inspection", "Projets"]
    with pytest.raises(FolderError):
        box.create_folder("projets")
    with pytest.raises(FolderError):
        box.create_folder("Corbeille")
    with pytest.raises(FolderError):
        box.create_folder("   ")
    box.rename_folder(projets, "Projets 2027")
    assert box.folder_label(projets) == "Projets 2027"
    entry_id = make_entry(database, A, 1)
    box.move([entry_id], projets)
    assert box.page(projets)[1] == 1
    assert box.delete_folder(projets) == 1
    assert box.entry(entry_id)["folder"] == "Trash"
    assert not box.folder_exists(projets)
    with pytest.raises(FolderError):
        box.move([entry_id], projets)
    # another user's folders are not ours
    assert Mailbox(database, B).own_folders() == []


def test_infected_entries_stay_in_quarantine_or_trash(database):
    entry_id = make_entry(database, A, 1, folder="Quarantine", virus={"signature": "Eicar-Test-Signature"})
    box = Mailbox(database, A)
    assert box.move([entry_id], "INBOX") == 0
    assert box.report([entry_id], "ham") == []
    box.delete([entry_id])
    assert box.entry(entry_id)["folder"] == "Trash"
    box.restore([entry_id])
    assert box.entry(entry_id)["folder"] == "Quarantine"


def test_report_moves_and_returns_feedback_fields(database):
    entry_id = make_entry(database, A, 1, sender=("Promo", "promo@spam.example"))
    box = Mailbox(database, A)
    [item] = box.report([entry_id], "spam")
    assert item["sender"] == "promo@spam.example" and item["message_id"] == f"m-{A}-1"
    assert box.entry(entry_id)["folder"] == "Junk"
    box.report([entry_id], "ham")
    assert box.entry(entry_id)["folder"] == "INBOX"


def test_search_by_word_sender_subject_body_and_dates(database):
    make_entry(
        database,
        A,
        1,
        subject="Réunion pédagogique",
        sender=("Hélène Durand", "helene.durand@ac-montpellier.fr"),
    )
    make_entry(
        database, A, 30, subject="Sortie scolaire", body="Le car part à 8 h devant le collège Jean-Moulin."
    )
    make_entry(database, A, 60, folder="Junk", subject="Gagnez un iPhone")
    box = Mailbox(database, A)

    def subjects(**criteria):
        return sorted(e["subject"] for e in box.search(**criteria)[0])

    assert subjects(text="reunion") == ["Réunion pédagogique"]
    assert subjects(text="RÉUNION") == ["Réunion pédagogique"]
    assert subjects(sender="helene") == ["Réunion pédagogique"]
    assert subjects(sender="durand@ac") == ["Réunion pédagogique"]
    assert subjects(subject="sortie") == ["Sortie scolaire"]
    assert subjects(text="college moulin") == ["Sortie scolaire"]  # body words, accent-insensitive
    assert subjects(text="college absent") == []
    assert subjects(text="iphone") == ["Gagnez un iPhone"]
    assert subjects(text="iphone", folder="INBOX") == []
    day = (T0 + dt.timedelta(hours=30)).date()
    assert subjects(since=day, until=day) == ["Sortie scolaire"]
    assert subjects(since=day) == ["Gagnez un iPhone", "Sortie scolaire"]
    assert subjects(text="iph.*") == []  # regex characters are literal
    results, total = box.search(page_size=2)
    assert total is None and len(results) == 2  # more follow; a search is not counted
    results, total = box.search(page_size=2, page=2)
    assert total == 3 and len(results) == 1  # the last page tells the total


def test_folder_totals_stay_exact_through_deliveries_moves_deletions_and_restores(database, monkeypatch):
    """Totals cache the part older than a day (FolderTotals): every kind of change must still show."""
    box = Mailbox(database, A)
    old = [make_entry(database, A, n) for n in range(5)]  # received at T0: older than a day
    assert box.total("INBOX") == 5 and box.total("Trash") == 0

    # An older entry added otherwise than by delivery (insert_entries: a draft, an import) marks a change.
    make_entry(database, A, 99)
    assert box.total("INBOX") == 6
    # Delivery's path (EntryWriter) marks nothing: its entries are received now, in the recent part.
    template = database.mailbox_entries.find_one({"_id": old[0]})
    delivered = {**template, "_id": "delivered-now", "received_at": dt.datetime.now(dt.UTC)}
    assert mailstore.EntryWriter(database).insert_counted([delivered]) == {"delivered-now"}
    assert box.page("INBOX")[1] == box.total("INBOX") == 7
    assert box.folders(totals=True)[0].total == 7

    # Webmail changes of older entries: each one changes the token, so the cached part is recounted.
    box.move(old[:2], "Junk")
    assert (box.total("INBOX"), box.total("Junk")) == (5, 2)
    box.delete([old[2]])
    assert (box.total("INBOX"), box.total("Trash")) == (4, 1)
    box.restore([old[2]])
    assert (box.total("INBOX"), box.total("Trash")) == (5, 0)
    box.report([old[0]], "ham")
    assert (box.total("INBOX"), box.total("Junk")) == (6, 1)
    box.delete([old[3]])
    box.delete([old[3]])  # from Trash: for good
    assert (box.total("INBOX"), box.total("Trash")) == (5, 0)
    folder = box.create_folder("Archives")
    box.move([old[4]], folder)
    assert (box.total("INBOX"), box.total(folder)) == (4, 1)
    box.delete_folder(folder)
    assert (box.total(folder), box.total("Trash")) == (0, 1)
    # A process with nothing cached agrees.
    monkeypatch.setattr("webmail.mailbox.TOTALS", FolderTotals())
    assert (box.total("INBOX"), box.total("Junk"), box.total("Trash")) == (4, 1, 1)
