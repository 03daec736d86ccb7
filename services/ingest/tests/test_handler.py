"""Recipient and sender decisions of the SMTP handler, with the in-memory directory."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingest import codes
from ingest.commit import Committer
from ingest.handler import IngestHandler
from ingest.recipients import Login, StaticDirectory
from ingest.server import IngestEnvelope, IngestLimits, IngestSession, SessionTracker

DOMAIN = "ac-montpellier.fr"
CAMILLE = f"camille.martin@{DOMAIN}"


@pytest.fixture
def directory():
    return StaticDirectory(
        DOMAIN,
        mailboxes={CAMILLE, f"postmaster@{DOMAIN}"},
        aliases={f"c.martin@{DOMAIN}": CAMILLE},
        suspended={f"suspendu@{DOMAIN}"},
        deleted={f"supprime@{DOMAIN}"},
    )


def handler(origin: str, directory, **limits) -> IngestHandler:
    executor = ThreadPoolExecutor(2)
    return IngestHandler(
        origin=origin,
        mail_domain=DOMAIN,
        server_name="mx.test.invalid",
        directory=directory,
        committer=Committer(None, None, executor, 1),
        directory_executor=executor,
        limits=IngestLimits(**limits),
        tracker=SessionTracker(10),
    )


def rcpt(
    hook: IngestHandler, *addresses: str, login: Login | None = None
) -> tuple[list[str], IngestEnvelope]:
    async def run():
        session = IngestSession(asyncio.get_running_loop(), hook.origin)
        session.login = login
        envelope = IngestEnvelope()
        envelope.mail_from = "sender@example.org"
        replies = [await hook.handle_RCPT(None, session, envelope, a, []) for a in addresses]
        return replies, envelope

    return asyncio.run(run())


def test_local_unknown_suspended_deleted_on_mx(directory):
    replies, envelope = rcpt(
        handler("mx", directory),
        CAMILLE,
        f"inconnu@{DOMAIN}",
        f"suspendu@{DOMAIN}",
        f"supprime@{DOMAIN}",
    )
    assert replies == [
        codes.RECIPIENT_OK,
        codes.UNKNOWN_RECIPIENT,
        codes.SUSPENDED_RECIPIENT,
        codes.DELETED_RECIPIENT,
    ]
    assert envelope.rcpt_tos == [CAMILLE]
    assert envelope.mailboxes == [CAMILLE]


def test_aliases_resolve_to_one_mailbox_and_postmaster_needs_no_domain(directory):
    replies, envelope = rcpt(handler("mx", directory), f"c.martin@{DOMAIN}", CAMILLE, "Postmaster")
    assert replies == [codes.RECIPIENT_OK] * 3
    assert envelope.rcpt_tos == [f"c.martin@{DOMAIN}", CAMILLE, "Postmaster"]
    assert envelope.mailboxes == [CAMILLE, f"postmaster@{DOMAIN}"]


def test_mx_refuses_to_relay_but_submission_sends_outside(directory):
    assert rcpt(handler("mx", directory), "someone@example.org")[0] == [codes.RELAY_DENIED]
    replies, envelope = rcpt(handler("submission", directory), "someone@example.org")
    assert replies == [codes.RECIPIENT_OK]
    assert envelope.mailboxes == ["someone@example.org"]


def test_the_recipient_limit_answers_452(directory):
    replies, envelope = rcpt(handler("mx", directory, max_recipients=2), CAMILLE, CAMILLE, CAMILLE)
    assert replies == [codes.RECIPIENT_OK, codes.RECIPIENT_OK, codes.TOO_MANY_RECIPIENTS]
    assert len(envelope.rcpt_tos) == 2


def test_a_directory_outage_is_temporary(directory):
    directory.fail = True
    assert rcpt(handler("mx", directory), CAMILLE)[0] == [codes.DIRECTORY_UNAVAILABLE]


def test_hostile_addresses_are_refused(directory):
    replies, _ = rcpt(handler("mx", directory), "a\udcff@example.org", "<>", "caf\u00e9@example.org")
    assert replies == [codes.RECIPIENT_NOT_UTF8, codes.BAD_RECIPIENT_SYNTAX, codes.NEEDS_SMTPUTF8]


def mail(hook: IngestHandler, sender: str, login: Login | None) -> str:
    async def run():
        session = IngestSession(asyncio.get_running_loop(), hook.origin)
        session.login = login
        return await hook.handle_MAIL(None, session, IngestEnvelope(), sender, [])

    return asyncio.run(run())


def test_submission_senders_must_be_the_account_or_its_alias(directory):
    login = Login(True, CAMILLE, "ok")
    hook = handler("submission", directory)
    assert mail(hook, CAMILLE.upper(), login) == codes.SENDER_OK
    assert mail(hook, f"c.martin@{DOMAIN}", login) == codes.SENDER_OK
    assert mail(hook, f"postmaster@{DOMAIN}", login) == codes.SENDER_NOT_OWNED
    assert mail(hook, "ceo@example.org", login) == codes.SENDER_NOT_OWNED
    assert mail(hook, "<>", login) == codes.SENDER_NOT_OWNED


def test_mx_accepts_any_sender_including_bounces(directory):
    hook = handler("mx", directory)
    assert mail(hook, "<>", None) == codes.SENDER_OK
    assert mail(hook, "a@example.org", None) == codes.SENDER_OK


def test_a_draining_server_refuses_new_transactions(directory):
    hook = handler("mx", directory)
    hook.tracker.draining = True
    assert mail(hook, "a@example.org", None) == codes.SHUTTING_DOWN


def test_unexpected_errors_answer_451_not_500(directory):
    assert (
        asyncio.run(handler("mx", directory).handle_exception(RuntimeError("boom"))) == codes.INTERNAL_ERROR
    )


def test_ingest_does_not_monkey_patch_with_eventlet():
    import eventlet.patcher

    import ingest.__main__  # noqa: F401 - the service's own imports

    for module in ("socket", "thread", "time", "select"):
        assert not eventlet.patcher.is_monkey_patched(module)


def test_over_long_addresses_and_repeated_recipients(directory):
    long_address = "a" * 250 + "@example.org"
    replies, envelope = rcpt(handler("submission", directory), long_address, "x@example.org", "x@example.org")
    assert replies == [codes.ADDRESS_TOO_LONG, codes.RECIPIENT_OK, codes.RECIPIENT_OK]
    assert envelope.mailboxes == ["x@example.org"]


def test_recipients_stop_before_the_event_would_be_too_big(directory, monkeypatch):
    import ingest.handler

    monkeypatch.setattr(ingest.handler, "RECIPIENT_BYTES_BUDGET", 100)
    addresses = [f"destinataire.{n}@example.org" for n in range(5)]
    replies, envelope = rcpt(handler("submission", directory), *addresses)
    assert replies == [codes.RECIPIENT_OK] * 3 + [codes.TOO_MANY_RECIPIENTS] * 2
    assert envelope.mailbox_bytes <= 100
