"""scan → spam → delivery as real processes: clean mail is classified and filed in INBOX or Junk."""

from __future__ import annotations

import pytest

from spam.registry import ModelRegistry
from spam.testing import corpus_or_skip, make_message, small_model
from tests.helpers import wait_until
from tests.pipeline import purge_pipeline_queues, running_stages, store_raw


@pytest.fixture
def stages(database, tmp_path):
    corpus_or_skip()
    registry = ModelRegistry(database)
    registry.ensure_indexes()
    registry.activate(registry.publish(small_model(42)))
    purge_pipeline_queues()
    with running_stages(
        ["scan", "spam", "delivery"], database.name, tmp_path, EVENT_RETRY_DELAYS="1"
    ) as procs:
        yield procs


def received(message_id: str, recipients: list[str], sender: str) -> dict:
    return {"message_id": message_id, "sender": sender, "recipients": recipients, "size": 1, "origin": "mx"}


def folders_of(database, message_id: str) -> dict[str, str]:
    return {e["mailbox"]: e["folder"] for e in database.mailbox_entries.find({"message_id": message_id})}


def test_colleague_mail_lands_in_the_inbox_and_corpus_spam_in_junk(stages, database, publisher):
    root = corpus_or_skip()
    ham = store_raw(database, make_message())
    spam_path = sorted((root / "data" / "spam-2").glob("*.txt"))[10]
    spam = store_raw(database, spam_path.read_bytes())
    rcpt = ["dominique.durand@ac-montpellier.fr"]
    publisher.publish("mail.received", received(ham, rcpt, "camille.martin@ac-montpellier.fr"))
    publisher.publish("mail.received", received(spam, rcpt, "promo@exemple.biz"))

    assert wait_until(lambda: folders_of(database, ham), what="ham filed") == {rcpt[0]: "INBOX"}
    assert wait_until(lambda: folders_of(database, spam), what="spam filed") == {rcpt[0]: "Junk"}
    junk = database.mailbox_entries.find_one({"message_id": spam})
    assert junk["spam"]["score"] >= 0.5
    assert junk["spam"]["reasons"] and all(isinstance(r, str) for r in junk["spam"]["reasons"])
    inbox = database.mailbox_entries.find_one({"message_id": ham})
    assert inbox["spam"]["verdict"] == "ham" and inbox["spam"]["reasons"] == []  # only junk shows them


def test_a_recipient_who_allowed_the_sender_gets_the_spam_in_the_inbox(stages, database, publisher):
    root = corpus_or_skip()
    from spam.lists import SenderLists

    SenderLists(database).allow("louis.garcia@ac-montpellier.fr", "promo@exemple.biz")
    spam_path = sorted((root / "data" / "spam-2").glob("*.txt"))[10]
    spam = store_raw(database, spam_path.read_bytes())
    rcpts = ["louis.garcia@ac-montpellier.fr", "ines.bernard@ac-montpellier.fr"]
    publisher.publish("mail.received", received(spam, rcpts, "promo@exemple.biz"))

    folders = wait_until(lambda: (f := folders_of(database, spam)) and len(f) == 2 and f, what="both filed")
    assert folders == {"louis.garcia@ac-montpellier.fr": "INBOX", "ines.bernard@ac-montpellier.fr": "Junk"}


def test_gtube_is_junk_whatever_the_model_says(stages, database, publisher):
    from spam.service import GTUBE

    message_id = store_raw(database, make_message(body="Bonjour,\n" + GTUBE.decode() + "\n"))
    publisher.publish(
        "mail.received", received(message_id, ["louis.garcia@ac-montpellier.fr"], "a@exemple.org")
    )
    assert wait_until(lambda: folders_of(database, message_id)) == {"louis.garcia@ac-montpellier.fr": "Junk"}
    entry = database.mailbox_entries.find_one({"message_id": message_id})
    assert entry["spam"]["reasons"] == ["message de test antispam (GTUBE)"]


def test_a_not_spam_report_puts_the_sender_on_the_reporters_allow_list(stages, database, publisher):
    from spam.lists import ListKind, SenderLists

    root = corpus_or_skip()
    raw = sorted((root / "data" / "spam-2").glob("*.txt"))[20].read_bytes()
    message_id = store_raw(database, raw)
    publisher.publish(
        "mail.feedback",
        {
            "account_id": "louis.garcia@ac-montpellier.fr",
            "mailbox": "louis.garcia@ac-montpellier.fr",
            "message_id": message_id,
            "label": "ham",
            "sender": "lettre@association-parents.fr",
        },
    )
    lists = SenderLists(database)
    wait_until(
        lambda: (
            lists.lookup("louis.garcia@ac-montpellier.fr", "lettre@association-parents.fr") is ListKind.ALLOW
        ),
        what="the allow list entry",
    )
    assert lists.lookup("ines.bernard@ac-montpellier.fr", "lettre@association-parents.fr") is None
