"""Integration tests of password recovery over gRPC: identifier or names + NUMEN + date of birth, one
answer for every case, reset tokens that are single-use, short-lived and stored hashed, sessions revoked."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs, urlparse

import pytest

from directory.client import DirectoryInvalidInput
from directory.testing import TEST_ESTABLISHMENTS, DirectoryHarness, make_numen, make_person

pytestmark = pytest.mark.integration

OLD, NEW = "Tr0ub4dour&Garrigue", "Cigale#Pinède2031"


@pytest.fixture
def harness(database):
    with DirectoryHarness(database, reset_token_ttl=900, throttle={"free_failures": 5}) as h:
        h.directory.load_establishments(TEST_ESTABLISHMENTS)
        yield h


def activated(h, **overrides):
    person = make_person(**overrides)
    _, _, account = h.client.create_account(person)
    assert h.client.change_password(account.address, person.numen, OLD).ok
    return person, account


def token_of(h) -> str:
    url = h.notifier.of_type("account.reset_requested")[-1]["reset_url"]
    assert url.startswith("http://127.0.0.1:8080/")  # from PUBLIC_URL, never from a request header
    return parse_qs(urlparse(url).query)["jeton"][0]


def test_reset_by_identifier_end_to_end(harness):
    c = harness.client
    person, account = activated(harness)
    epoch = c.session_state(account.account_id).session_epoch
    _message, _ = c.request_password_reset(
        identifier="camille.martin",
        numen=person.numen,
        birth_date=person.birth_date,
        client_address="10.1.1.1",
    )
    event = harness.notifier.of_type("account.reset_requested")[-1]
    assert event["recovery_address"] == "camille.perso@example.org"
    assert event["account_id"] == account.account_id and event["display_name"] == "Camille MARTIN"
    assert "expires_at" in event
    token = token_of(harness)
    # Stored hashed only.
    assert harness.directory.tokens.find_one({"_id": hashlib.sha256(token.encode()).hexdigest()})
    assert token not in json.dumps(list(harness.directory.tokens.find()), default=str)

    weak_ok, _weak_message, problems = c.complete_password_reset(token, "azerty")
    assert not weak_ok and problems  # refused by the policy, token still usable
    ok, done, _ = c.complete_password_reset(token, NEW, "10.1.1.1")
    assert ok and "réinitialisé" in done
    assert c.session_state(account.account_id).session_epoch == epoch + 1  # every session revoked
    notice = harness.notifier.of_type("account.password_changed")[-1]
    assert notice["reason"] == "reset" and notice["address"] == account.address
    assert c.authenticate("camille.martin", OLD).result == "BAD_CREDENTIALS"
    assert c.authenticate("camille.martin", NEW).result == "OK"

    replay_ok, replay_message, _ = c.complete_password_reset(token, "Autre#Mot2passe!")
    assert not replay_ok and "plus valable" in replay_message
    assert c.authenticate("camille.martin", NEW).result == "OK"


def test_same_answer_whatever_matched(harness):
    c = harness.client
    person, _ = activated(harness)
    suspended_person, suspended = activated(harness, first_name="Paul", recovery_address="paul@example.org")
    c.admin("suspend", suspended.address)
    answers = {
        c.request_password_reset(
            identifier="camille.martin", numen=person.numen, birth_date=person.birth_date
        )[0],
        c.request_password_reset(
            identifier="camille.martin", numen=make_numen(), birth_date=person.birth_date
        )[0],
        c.request_password_reset(identifier="camille.martin", numen=person.numen, birth_date="18/05/1984")[0],
        c.request_password_reset(identifier="personne.inconnue", numen=person.numen, birth_date="17/05/1984")[
            0
        ],
        c.request_password_reset(
            last_name="Inconnu", first_name="Jean", numen=person.numen, birth_date="17/05/1984"
        )[0],
        c.request_password_reset(
            identifier="paul.martin", numen=suspended_person.numen, birth_date=suspended_person.birth_date
        )[0],
    }
    assert len(answers) == 1 and "Si les informations" in answers.pop()
    assert len(harness.notifier.of_type("account.reset_requested")) == 1  # only the real match


def test_reset_by_names_among_homonyms(harness):
    c = harness.client
    _a, account_a = activated(
        harness, first_name="Jean", birth_date="01/02/1970", recovery_address="a@example.org"
    )
    b, account_b = activated(
        harness, first_name="Jean", birth_date="01/02/1970", recovery_address="b@example.org"
    )
    assert {account_a.address, account_b.address} == {
        "jean.martin@ac-montpellier.fr",
        "jean.martin2@ac-montpellier.fr",
    }
    c.request_password_reset(last_name="MARTIN", first_name="jean", numen=b.numen, birth_date="1970-02-01")
    event = harness.notifier.of_type("account.reset_requested")[-1]
    assert event["account_id"] == account_b.account_id and event["recovery_address"] == "b@example.org"


def test_expired_token_and_superseded_token(harness):
    c = harness.client
    person, _ = activated(harness)
    c.request_password_reset(identifier="camille.martin", numen=person.numen, birth_date=person.birth_date)
    first = token_of(harness)
    c.request_password_reset(identifier="camille.martin", numen=person.numen, birth_date=person.birth_date)
    second = token_of(harness)
    assert not c.complete_password_reset(first, NEW)[0]  # only the latest link works
    harness.advance(901)
    ok, message, _ = c.complete_password_reset(second, NEW)
    assert not ok and "plus valable" in message
    assert c.authenticate("camille.martin", OLD).result == "OK"
    assert not c.complete_password_reset("", NEW)[0]
    assert not c.complete_password_reset("x" * 500, NEW)[0]


def test_bad_inputs_are_rejected_without_revealing_anything(harness):
    c = harness.client
    with pytest.raises(DirectoryInvalidInput, match="NUMEN"):
        c.request_password_reset(identifier="camille.martin", numen="12345", birth_date="17/05/1984")
    with pytest.raises(DirectoryInvalidInput, match="impossible"):
        c.request_password_reset(identifier="camille.martin", numen=make_numen(), birth_date="30/02/1984")
    with pytest.raises(DirectoryInvalidInput, match="identifiant"):
        c.request_password_reset(numen=make_numen(), birth_date="17/05/1984")


def test_recovery_brute_force_is_throttled(harness):
    c = harness.client
    person, _ = activated(harness)
    for _ in range(5):
        c.request_password_reset(
            identifier="camille.martin",
            numen=make_numen(),
            birth_date=person.birth_date,
            client_address="203.0.113.5",
        )
    message, retry_after = c.request_password_reset(
        identifier="camille.martin",
        numen=person.numen,
        birth_date=person.birth_date,
        client_address="203.0.113.5",
    )
    assert retry_after >= 1 and "Réessayez" in message
    assert not harness.notifier.of_type("account.reset_requested")
    # The owner, from elsewhere, is served.
    c.request_password_reset(
        identifier="camille.martin",
        numen=person.numen,
        birth_date=person.birth_date,
        client_address="198.51.100.1",
    )
    assert len(harness.notifier.of_type("account.reset_requested")) == 1
