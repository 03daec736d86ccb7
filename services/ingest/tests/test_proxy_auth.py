"""SASL PLAIN proxy authorisation (RFC 4616 authzid) on the submission port: the webmail's service
identity may act for an active local account, nobody else may act for anyone."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingest import codes
from ingest.commit import Committer
from ingest.handler import IngestHandler, ServiceIdentity
from ingest.recipients import StaticDirectory
from ingest.server import IngestEnvelope, IngestLimits, IngestSession, SessionTracker

DOMAIN = "ac-montpellier.fr"
CAMILLE = f"camille.martin@{DOMAIN}"
LOUIS = f"louis.garcia@{DOMAIN}"
SECRET = "s3cr3t-partage-entre-ingest-et-webmail"


@pytest.fixture
def directory():
    return StaticDirectory(
        DOMAIN,
        mailboxes={CAMILLE, LOUIS},
        aliases={f"c.martin@{DOMAIN}": CAMILLE},
        suspended={f"suspendu@{DOMAIN}"},
        deleted={f"supprime@{DOMAIN}"},
        passwords={CAMILLE: "camille-pw", LOUIS: "louis-pw"},
    )


def handler(
    directory, service: ServiceIdentity | None = ServiceIdentity("webmail", SECRET), origin="submission"
):
    executor = ThreadPoolExecutor(2)
    return IngestHandler(
        origin=origin,
        mail_domain=DOMAIN,
        server_name="mx.test.invalid",
        directory=directory,
        committer=Committer(None, None, executor, 1),
        directory_executor=executor,
        limits=IngestLimits(),
        tracker=SessionTracker(10),
        service=service,
    )


def auth(hook: IngestHandler, login: str, password: str, authzid: str = ""):
    """(reply, account logged in or None, the MAIL reply for `authzid or login` afterwards)."""

    async def run():
        session = IngestSession(asyncio.get_running_loop(), hook.origin)
        status, result = await hook.authenticate(session, login.encode(), password.encode(), authzid.encode())
        account = session.login.account if session.login else None
        mail = None
        if result is not None:
            mail = await hook.handle_MAIL(None, session, IngestEnvelope(), account, [])
        return status, account, mail

    return asyncio.run(run())


def test_the_service_identity_acts_for_an_active_account(directory):
    status, account, mail = auth(handler(directory), "webmail", SECRET, CAMILLE.upper())
    assert status == codes.AUTH_OK
    assert account == CAMILLE
    assert mail == codes.SENDER_OK  # then the usual rules: MAIL FROM must be hers


def test_the_service_session_is_bound_by_the_users_sender_rules(directory):
    async def run():
        hook = handler(directory)
        session = IngestSession(asyncio.get_running_loop(), "submission")
        await hook.authenticate(session, b"webmail", SECRET.encode(), CAMILLE.encode())
        return await hook.handle_MAIL(None, session, IngestEnvelope(), LOUIS, [])

    assert asyncio.run(run()) == codes.SENDER_NOT_OWNED


def test_a_wrong_secret_is_refused(directory):
    assert auth(handler(directory), "webmail", SECRET + "x", CAMILLE)[:2] == (codes.AUTH_FAILED, None)
    assert auth(handler(directory), "webmail", "", CAMILLE)[:2] == (codes.AUTH_FAILED, None)


def test_unknown_suspended_deleted_or_external_authzids_are_refused(directory):
    for authzid in (f"personne@{DOMAIN}", f"suspendu@{DOMAIN}", f"supprime@{DOMAIN}", "ami@example.org"):
        assert auth(handler(directory), "webmail", SECRET, authzid)[:2] == (codes.AUTH_FAILED, None), authzid


def test_the_service_identity_without_authzid_is_refused(directory):
    assert auth(handler(directory), "webmail", SECRET)[:2] == (codes.AUTH_FAILED, None)


def test_an_empty_secret_disables_the_service_identity(directory):
    hook = handler(directory, ServiceIdentity("webmail", ""))
    assert hook.service is None
    # "webmail" is then an ordinary (unknown) login checked by the directory.
    assert auth(hook, "webmail", "", CAMILLE)[:2] == (codes.AUTH_FAILED, None)
    assert ("authenticate", "webmail") in directory.calls


def test_a_user_cannot_act_for_someone_else(directory):
    assert auth(handler(directory), CAMILLE, "camille-pw", LOUIS)[:2] == (codes.AUTH_FAILED, None)
    assert auth(handler(directory, None), CAMILLE, "camille-pw", LOUIS)[:2] == (codes.AUTH_FAILED, None)


def test_a_user_may_name_themselves_as_authzid(directory):
    assert auth(handler(directory), CAMILLE, "camille-pw", CAMILLE)[:2] == (codes.AUTH_OK, CAMILLE)
    assert auth(handler(directory), CAMILLE, "camille-pw")[:2] == (codes.AUTH_OK, CAMILLE)


def test_a_user_cannot_use_the_service_secret_under_their_own_name(directory):
    assert auth(handler(directory), CAMILLE, SECRET, LOUIS)[:2] == (codes.AUTH_FAILED, None)


def test_the_directory_down_is_a_temporary_failure(directory):
    directory.fail = True
    assert auth(handler(directory), "webmail", SECRET, CAMILLE)[0] == codes.AUTH_TEMPORARY_FAILURE


def test_the_secret_is_not_in_the_repr():
    assert SECRET not in repr(ServiceIdentity("webmail", SECRET))
