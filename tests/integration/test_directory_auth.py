"""Integration tests of the directory over a real gRPC channel and the real database: first login with
the NUMEN, password policy on change, refusal reasons, maintenance, throttling against brute force, and
the NUMEN kept out of logs, audit and replies."""

from __future__ import annotations

import json
import logging

import pytest

from directory.testing import TEST_ESTABLISHMENTS, DirectoryHarness, make_numen, make_person

pytestmark = pytest.mark.integration

GOOD = "Tr0ub4dour&Garrigue"


@pytest.fixture
def harness(database):
    with DirectoryHarness(
        database,
        throttle={
            "free_failures": 3,
            "base_delay": 2,
            "address_max_failures": 30,
            "account_tarpit_threshold": 20,
            "tarpit_delay": 0.01,
        },
    ) as h:
        h.directory.load_establishments(TEST_ESTABLISHMENTS)
        yield h


def create(h, **overrides):
    person = make_person(**overrides)
    created, _, account = h.client.create_account(person)
    assert created
    return person, account


def test_first_login_with_numen_then_forced_change(harness):
    c = harness.client
    person, account = create(harness)
    assert account.address == "camille.martin@ac-montpellier.fr"
    assert account.must_change_password

    first = c.authenticate("camille.martin", person.numen.lower(), "10.0.0.1", "webmail")
    assert first.result == "PASSWORD_CHANGE_REQUIRED"
    assert "nouveau mot de passe" in first.message
    assert first.account.session_epoch == 1

    # Until the change, a "password" is not accepted and the NUMEN does not open the mailbox.
    assert c.authenticate("camille.martin", GOOD, "10.0.0.1").result == "BAD_CREDENTIALS"

    weak = c.change_password("camille.martin", person.numen, "azerty", "10.0.0.1")
    assert not weak.ok and any("courant" in p for p in weak.problems)
    named = c.change_password("camille.martin", person.numen, "Camille#Jardin2026", "10.0.0.1")
    assert not named.ok and any("nom" in p for p in named.problems)
    with_numen = c.change_password("camille.martin", person.numen, f"Xy#{person.numen}!", "10.0.0.1")
    assert not with_numen.ok and any("NUMEN" in p for p in with_numen.problems)

    done = c.change_password("camille.martin@ac-montpellier.fr", person.numen, GOOD, "10.0.0.1")
    assert done.ok, done.problems
    assert done.account.session_epoch == 2 and not done.account.must_change_password

    ok = c.authenticate("Camille.Martin@AC-Montpellier.fr", GOOD, "10.0.0.1")
    assert ok.result == "OK" and ok.account.address == account.address
    assert c.authenticate("camille.martin", person.numen, "10.0.0.1").result == "BAD_CREDENTIALS"
    events = harness.notifier.of_type("account.password_changed")
    assert events[-1]["reason"] == "change" and events[-1]["address"] == account.address
    assert c.session_state(account.account_id).session_epoch == 2

    # A later change needs the current password and checks the policy again, including the NUMEN.
    later = c.change_password("camille.martin", GOOD, f"Ab!{person.numen}", "10.0.0.1")
    assert not later.ok and any("NUMEN" in p for p in later.problems)


def test_bad_credentials_never_say_which_part(harness):
    c = harness.client
    person, _ = create(harness)
    unknown = c.authenticate("personne.inconnue", person.numen, "10.0.0.2")
    wrong = c.authenticate("camille.martin", make_numen(), "10.0.0.3")
    empty = c.authenticate("", "", "10.0.0.4")
    other_domain = c.authenticate("camille.martin@example.org", person.numen, "10.0.0.5")
    assert {r.result for r in (unknown, wrong, empty, other_domain)} == {"BAD_CREDENTIALS"}
    assert len({r.message for r in (unknown, wrong, empty, other_domain)}) == 1
    assert unknown.account is None and wrong.account is None


def test_suspended_deleted_and_maintenance_reasons(harness):
    c = harness.client
    person, account = create(harness)
    assert c.change_password("camille.martin", person.numen, GOOD).ok

    c.admin("suspend", account.address, "enquête administrative")
    assert c.authenticate("camille.martin", GOOD, "10.0.0.1").result == "ACCOUNT_SUSPENDED"
    # The reason is only revealed to whoever knows the password.
    assert c.authenticate("camille.martin", "Wr0ng!Password#", "10.0.0.1").result == "BAD_CREDENTIALS"
    c.admin("unsuspend", account.address)

    c.admin("delete", account.address)
    deleted = c.authenticate("camille.martin", GOOD, "10.0.0.1")
    assert deleted.result == "ACCOUNT_DELETED" and "rectorat" in deleted.message
    c.admin("restore", account.address)
    assert c.authenticate("camille.martin", GOOD, "10.0.0.1").result == "OK"

    state = c.set_maintenance(True, "Mise à jour de la plateforme jusqu'à 14 h.")
    assert state.enabled and c.maintenance().enabled
    refused = c.authenticate("camille.martin", GOOD, "10.0.0.1")
    assert refused.result == "MAINTENANCE" and "14 h" in refused.message
    assert c.session_state(account.account_id).maintenance
    c.set_maintenance(False)
    harness.directory._maintenance_cache = None  # skip the one-second cache
    assert c.authenticate("camille.martin", GOOD, "10.0.0.1").result == "OK"


def test_brute_force_is_slowed_but_owner_is_not_locked_out(harness):
    c = harness.client
    person, account = create(harness)
    assert c.change_password("camille.martin", person.numen, GOOD).ok
    attacker = "203.0.113.66"
    for i in range(3):
        assert c.authenticate("camille.martin", f"Guess#{i}xxxxxxx", attacker).result == "BAD_CREDENTIALS"
    throttled = c.authenticate("camille.martin", "Guess#9xxxxxxx", attacker)
    assert throttled.result == "THROTTLED" and throttled.retry_after_seconds >= 1
    assert "Réessayez dans" in throttled.message
    # Even the right password is not checked from the throttled address: no oracle.
    assert c.authenticate("camille.martin", GOOD, attacker).result == "THROTTLED"
    # The owner, elsewhere, logs in as usual.
    assert c.authenticate("camille.martin", GOOD, "198.51.100.7").result == "OK"
    # The delay grows exponentially and ends.
    harness.advance(2)
    assert c.authenticate("camille.martin", "Guess#10xxxxxx", attacker).result == "BAD_CREDENTIALS"
    again = c.authenticate("camille.martin", GOOD, attacker)
    assert again.result == "THROTTLED" and again.retry_after_seconds >= 3
    harness.advance(5)
    assert c.authenticate("camille.martin", GOOD, attacker).result == "OK"

    # A distributed attack: many addresses, each under its own limit; failures get a tarpit, the owner logs in.
    for i in range(25):
        c.authenticate("camille.martin", f"Bot#{i}xxxxxxxxx", f"192.0.2.{i}")
    assert c.authenticate("camille.martin", GOOD, "198.51.100.7").result == "OK"
    audit = c.audit(account_id=account.account_id, event_prefix="auth.", limit=200)
    assert any(e.event == "auth.throttled" for e in c.audit(event_prefix="auth.throttled", limit=10))
    assert sum(e.event == "auth.failure" for e in audit) >= 25


def test_password_spraying_from_one_address_is_limited(harness):
    c = harness.client
    for i in range(30):
        c.authenticate(f"personne{i}.inconnue", "Spray#2026xxxx", "203.0.113.99")
    assert c.authenticate("personne99.inconnue", "Spray#2026xxxx", "203.0.113.99").result == "THROTTLED"
    assert (
        c.authenticate("personne99.inconnue", "Spray#2026xxxx", "203.0.113.100").result == "BAD_CREDENTIALS"
    )


def test_numen_never_in_logs_audit_or_replies(harness, caplog):
    caplog.set_level(logging.DEBUG)
    c = harness.client
    person, account = create(harness)
    c.authenticate("camille.martin", person.numen, "10.0.0.1")
    c.authenticate("camille.martin", person.numen[:-1] + "Z", "10.0.0.1")
    c.authenticate(person.numen, "whatever", "10.0.0.1")  # typed in the wrong field
    c.authenticate("Mon-Mot-De-Passe!", person.numen, "10.0.0.1")
    c.request_password_reset(identifier="camille.martin", numen=person.numen, birth_date=person.birth_date)
    c.change_password("camille.martin", person.numen, GOOD)
    logged = "\n".join(r.getMessage() + json.dumps(vars(r), default=str) for r in caplog.records)
    assert person.numen not in logged
    audit_text = json.dumps(list(harness.directory.audit_log.find({}, {"_id": 0})), default=str)
    assert person.numen not in audit_text and GOOD not in audit_text
    assert "Mon-Mot-De-Passe" not in audit_text and "[non conforme]" in audit_text
    stored = harness.directory.accounts.find_one({"_id": account.account_id})
    assert stored["numen_hash"].startswith("$argon2id$") and stored["password_hash"].startswith("$argon2id$")
    assert person.numen not in json.dumps(stored, default=str)
    assert person.numen not in repr(c.contact_card(account.address))


def test_policy_check_rpc(harness):
    acceptable, problems, rules = harness.client.check_password_policy("Martin2026!!", "Camille", "Martin")
    assert not acceptable and problems and "12 caractères" in rules
    assert harness.client.check_password_policy("le mistral souffle sur la garrigue")[0]
