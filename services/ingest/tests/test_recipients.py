"""The directory behind ingest's small protocol: the adapter over the real client's types, and the fake."""

from __future__ import annotations

import pytest

from directory import client as directory_client
from ingest.recipients import DirectoryRecipients, DirectoryUnavailable, Login, Resolution, StaticDirectory

DOMAIN = "ac-montpellier.fr"


def account(address: str) -> directory_client.Account:
    return directory_client.Account(
        account_id="a1",
        address=address,
        aliases=(),
        first_name="Camille",
        last_name="Martin",
        display_name="Camille Martin",
        status="active",
        must_change_password=False,
        establishment_uai="0340001A",
        establishment_name="Lycée",
        departement="34",
        function="ENS",
        quota_bytes=1,
        session_epoch=1,
        synthetic=True,
    )


class FakeClient:
    """Stands in for directory.client.DirectoryClient, answering with that module's own dataclasses."""

    def __init__(self, recipients=None, auth=None, error: Exception | None = None):
        self.recipients = recipients or {}
        self.auth = auth
        self.error = error
        self.calls = []

    def resolve_recipient(self, address):
        self.calls.append(("resolve_recipient", address))
        if self.error:
            raise self.error
        return self.recipients.get(address, directory_client.Recipient("UNKNOWN"))

    def authenticate(self, identifier, password, client_address="", service=""):
        self.calls.append(("authenticate", identifier, client_address, service))
        if self.error:
            raise self.error
        return self.auth


def test_states_map_to_statuses_and_aliases_resolve_to_the_mailbox():
    client = FakeClient(
        {
            f"alias@{DOMAIN}": directory_client.Recipient("DELIVERABLE", "a1", f"Camille.Martin@{DOMAIN}"),
            f"s@{DOMAIN}": directory_client.Recipient("SUSPENDED"),
            f"d@{DOMAIN}": directory_client.Recipient("DELETED"),
        }
    )
    recipients = DirectoryRecipients(client, DOMAIN)
    assert recipients.resolve(f"alias@{DOMAIN}") == Resolution("local", f"camille.martin@{DOMAIN}")
    assert recipients.resolve(f"s@{DOMAIN}") == Resolution("suspended")
    assert recipients.resolve(f"d@{DOMAIN}") == Resolution("deleted")
    assert recipients.resolve(f"nobody@{DOMAIN}") == Resolution("unknown")


def test_external_addresses_are_not_asked_about():
    client = FakeClient()
    assert DirectoryRecipients(client, DOMAIN).resolve("x@example.org") == Resolution(
        "external", "x@example.org"
    )
    assert client.calls == []


def test_client_errors_become_unavailable_never_unknown():
    recipients = DirectoryRecipients(FakeClient(error=directory_client.DirectoryUnavailable("down")), DOMAIN)
    with pytest.raises(DirectoryUnavailable):
        recipients.resolve(f"a@{DOMAIN}")
    with pytest.raises(DirectoryUnavailable):
        recipients.authenticate("a", "b", "127.0.0.1")


def test_authentication_results():
    ok = FakeClient(auth=directory_client.AuthResult("OK", "", account(f"Camille.Martin@{DOMAIN}")))
    assert DirectoryRecipients(ok, DOMAIN).authenticate("camille.martin", "pw", "192.0.2.1") == Login(
        True, f"camille.martin@{DOMAIN}", "ok"
    )
    assert ok.calls == [("authenticate", "camille.martin", "192.0.2.1", "smtp-submission")]
    throttled = FakeClient(auth=directory_client.AuthResult("THROTTLED", "Trop d'essais", None, 60))
    login = DirectoryRecipients(throttled, DOMAIN).authenticate("x", "y", "192.0.2.1")
    assert not login.ok and login.temporary
    bad = FakeClient(auth=directory_client.AuthResult("BAD_CREDENTIALS", "", None))
    login = DirectoryRecipients(bad, DOMAIN).authenticate("x", "y", "192.0.2.1")
    assert not login.ok and not login.temporary
    first_login = FakeClient(auth=directory_client.AuthResult("PASSWORD_CHANGE_REQUIRED", "", account("a@x")))
    assert not DirectoryRecipients(first_login, DOMAIN).authenticate("x", "numen", "192.0.2.1").ok


def test_protobuf_replies_are_understood_too():
    from common.protos import directory_pb2 as pb

    client = FakeClient({f"a@{DOMAIN}": pb.ResolveRecipientReply(state=pb.RECIPIENT_SUSPENDED)})
    assert DirectoryRecipients(client, DOMAIN).resolve(f"a@{DOMAIN}") == Resolution("suspended")


def test_static_directory():
    directory = StaticDirectory(
        DOMAIN,
        mailboxes={f"a@{DOMAIN}"},
        aliases={f"alias@{DOMAIN}": f"a@{DOMAIN}"},
        suspended={f"s@{DOMAIN}"},
        passwords={f"a@{DOMAIN}": "secret"},
    )
    assert directory.resolve(f"ALIAS@{DOMAIN.upper()}") == Resolution("local", f"a@{DOMAIN}")
    assert directory.resolve(f"s@{DOMAIN}") == Resolution("suspended")
    assert directory.authenticate("a", "secret", "::1").ok
    assert not directory.authenticate("a", "wrong", "::1").ok


def test_the_cache_remembers_local_recipients_for_a_while_and_never_refusals():
    from ingest.recipients import CachedRecipients

    now = [0.0]
    directory = StaticDirectory(DOMAIN, mailboxes={f"camille.martin@{DOMAIN}"})
    cached = CachedRecipients(directory, ttl=10, clock=lambda: now[0])
    for _ in range(3):
        assert cached.resolve(f"Camille.Martin@{DOMAIN}") == Resolution("local", f"camille.martin@{DOMAIN}")
        assert cached.resolve(f"inconnu@{DOMAIN}") == Resolution("unknown")
    assert directory.calls.count(("resolve", f"Camille.Martin@{DOMAIN}")) == 1
    assert directory.calls.count(("resolve", f"inconnu@{DOMAIN}")) == 3  # refusals are asked each time
    # A new account is accepted at once; a suspension is seen once the entry expired.
    directory.mailboxes.add(f"inconnu@{DOMAIN}")
    assert cached.resolve(f"inconnu@{DOMAIN}").status == "local"
    directory.suspended.add(f"camille.martin@{DOMAIN}")
    assert cached.resolve(f"camille.martin@{DOMAIN}").status == "local"
    now[0] = 10.5
    assert cached.resolve(f"camille.martin@{DOMAIN}").status == "suspended"


def test_the_cache_keeps_failures_and_logins_uncached():
    from ingest.recipients import CachedRecipients

    directory = StaticDirectory(DOMAIN, mailboxes={f"camille.martin@{DOMAIN}"}, fail=True)
    cached = CachedRecipients(directory, size=1)
    with pytest.raises(DirectoryUnavailable):
        cached.resolve(f"camille.martin@{DOMAIN}")
    directory.fail = False
    directory.passwords[f"camille.martin@{DOMAIN}"] = "secret"
    assert cached.resolve(f"camille.martin@{DOMAIN}").status == "local"
    assert cached.authenticate("camille.martin", "secret", "127.0.0.1").ok
    assert not cached.authenticate("camille.martin", "wrong", "127.0.0.1").ok
    assert cached.resolve("ext@exemple.org") == Resolution("external", "ext@exemple.org")


def test_cached_answers_without_asking_the_directory_and_only_fresh_deliverable_ones():
    from ingest.recipients import CachedRecipients

    now = [0.0]
    directory = StaticDirectory(DOMAIN, mailboxes={f"camille.martin@{DOMAIN}"})
    cached = CachedRecipients(directory, ttl=10, clock=lambda: now[0])
    assert cached.known(f"camille.martin@{DOMAIN}") is None  # never asked yet
    cached.resolve(f"camille.martin@{DOMAIN}")
    cached.resolve(f"inconnu@{DOMAIN}")
    calls = len(directory.calls)
    assert cached.known(f"Camille.Martin@{DOMAIN}") == Resolution("local", f"camille.martin@{DOMAIN}")
    assert cached.known(f"inconnu@{DOMAIN}") is None  # refusals are not remembered
    assert len(directory.calls) == calls
    assert cached.known("ext@exemple.org") == Resolution("external", "ext@exemple.org")  # no call needed
    now[0] = 10.5
    assert cached.known(f"camille.martin@{DOMAIN}") is None  # expired
