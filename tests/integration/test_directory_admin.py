"""Integration tests of administration over gRPC: creation, homonyms and aliases, suspension, soft
deletion with retention and purge, reset to first login, the audit log, the operator token, and the
HR import through the operator CLI (broken lines, mixed encodings, duplicates, idempotent re-import)."""

from __future__ import annotations

import json

import pytest

from directory import admin
from directory.client import (
    DirectoryClient,
    DirectoryConflict,
    DirectoryDenied,
    DirectoryInvalidInput,
    DirectoryNotFound,
)
from directory.testing import TEST_ESTABLISHMENTS, DirectoryHarness, make_numen, make_person

pytestmark = pytest.mark.integration

GOOD = "Tr0ub4dour&Garrigue"


@pytest.fixture
def harness(database):
    with DirectoryHarness(database, retention_days=30) as h:
        assert h.client.load_establishments(TEST_ESTABLISHMENTS) == 5
        yield h


def test_create_is_idempotent_and_homonyms_get_stable_suffixes(harness):
    c = harness.client
    jean1 = make_person(first_name="Jean", birth_date="01/01/1970")
    created, _, a1 = c.create_account(jean1)
    again, message, same = c.create_account(jean1)
    assert created and not again and same.account_id == a1.account_id and "déjà un compte" in message
    _, _, a2 = c.create_account(make_person(first_name="Jean", birth_date="02/02/1972"))
    _, _, a3 = c.create_account(
        make_person(first_name="Jean", birth_date="01/01/1970")
    )  # same birth, other NUMEN
    assert [a.address.split("@")[0] for a in (a1, a2, a3)] == ["jean.martin", "jean.martin2", "jean.martin3"]
    _, _, accents = c.create_account(
        make_person(first_name="Marie-Hélène", last_name="N'Diaye de La Fontaine")
    )
    assert accents.address == "marie-helene.ndiaye-de-la-fontaine@ac-montpellier.fr"
    assert accents.display_name == "Marie-Hélène N'DIAYE DE LA FONTAINE"
    assert accents.departement == "34" and accents.quota_bytes == 1073741824

    # A purged address is never given to someone else.
    c.admin("delete", a2.address)
    assert c.purge_deleted(include_unexpired=True)[0] == 1
    _, _, a4 = c.create_account(make_person(first_name="Jean", birth_date="03/03/1973"))
    assert a4.address == "jean.martin4@ac-montpellier.fr"
    assert c.resolve_recipient(a2.address).state == "UNKNOWN"


def test_create_rejects_bad_input(harness):
    c = harness.client
    with pytest.raises(DirectoryInvalidInput, match="NUMEN"):
        c.create_account(make_person(numen="11E95"))
    with pytest.raises(DirectoryInvalidInput, match="impossible"):
        c.create_account(make_person(birth_date="31/04/1980"))
    with pytest.raises(DirectoryInvalidInput, match="Établissement inconnu"):
        c.create_account(make_person(establishment_uai="0349999Z"))
    with pytest.raises(DirectoryInvalidInput, match="Fonction"):
        c.create_account(make_person(function="astronaute"))
    with pytest.raises(DirectoryInvalidInput, match="Nom"):
        c.create_account(make_person(last_name="<script>"))


def test_aliases(harness):
    c = harness.client
    _, _, account = c.create_account(make_person())
    c.add_alias(account.address, "direction.college")
    resolved = c.resolve_recipient("Direction.College@ac-montpellier.fr")
    assert resolved.deliverable and resolved.mailbox_address == account.address
    assert c.authenticate("direction.college", "x").result == "BAD_CREDENTIALS"
    with pytest.raises(DirectoryConflict):
        c.add_alias(account.address, "direction.college")
    with pytest.raises(DirectoryConflict):
        c.add_alias(account.address, account.address)
    with pytest.raises(DirectoryInvalidInput):
        c.add_alias(account.address, "x@example.org")
    with pytest.raises(DirectoryNotFound):
        c.add_alias("personne.inconnue", "y")


def test_suspend_delete_restore_reset_purge_and_audit(harness):
    c = harness.client
    person = make_person()
    _, _, account = c.create_account(person)
    assert c.change_password(account.address, person.numen, GOOD).ok
    epoch = c.session_state(account.account_id).session_epoch

    c.admin("suspend", account.address, "départ")
    assert c.resolve_recipient(account.address).state == "SUSPENDED"
    assert c.session_state(account.account_id).session_epoch == epoch + 1
    assert c.search("martin").total == 0
    c.admin("unsuspend", "camille.martin")
    with pytest.raises(DirectoryConflict):
        c.admin("unsuspend", "camille.martin")

    message, _ = c.admin("delete", account.account_id)
    assert "restauration possible" in message
    assert c.resolve_recipient(account.address).state == "DELETED"
    with pytest.raises(DirectoryConflict):
        c.admin("delete", account.address)
    assert c.purge_deleted() == (0, 0)  # retention not over
    c.admin("restore", account.address)
    assert c.resolve_recipient(account.address).deliverable
    assert c.authenticate(account.address, GOOD).result == "OK"
    assert c.search("martin").total == 1

    c.admin("reset-first-login", account.address)
    assert c.authenticate(account.address, GOOD).result == "BAD_CREDENTIALS"
    assert c.authenticate(account.address, person.numen).result == "PASSWORD_CHANGE_REQUIRED"

    c.admin("delete", account.address)
    harness.advance(31 * 86400)
    assert c.purge_deleted()[0] == 1
    assert c.resolve_recipient(account.address).state == "UNKNOWN"
    with pytest.raises(DirectoryNotFound):
        c.admin("restore", account.address)

    events = [e.event for e in c.audit(limit=100)]
    for expected in (
        "account.created",
        "account.suspended",
        "account.deleted",
        "account.restored",
        "account.reset_first_login",
        "account.purged",
        "auth.success",
        "password.change",
        "reference.establishments_loaded",
    ):
        assert expected in events, expected
    entry = next(e for e in c.audit(event_prefix="account.suspended"))
    assert entry.actor == "test-operator" and json.loads(entry.details_json)["reason"] == "départ"


def test_admin_token_required_when_configured(database):
    with DirectoryHarness(database, admin_token="s3cret") as h:
        anonymous = DirectoryClient(h.address, admin_token="")
        with pytest.raises(DirectoryDenied):
            anonymous.set_maintenance(True)
        with pytest.raises(DirectoryDenied):
            anonymous.create_account(make_person())
        assert anonymous.maintenance().enabled is False  # reads stay open
        anonymous.close()
        assert h.client.set_maintenance(False).enabled is False


HEADER = "nom;prénom;NUMEN;date de naissance;établissement;fonction;adresse de secours\r\n"


def test_cli_import_with_broken_lines_mixed_encodings_and_reimport(harness, tmp_path, capsys):
    numens = [make_numen() for _ in range(4)]
    good = [
        f"Lefèvre;Hélène;{numens[0]};12/03/1980;0340001S;Enseignante;h@example.org\r\n".encode("cp1252"),
        f"Noël;Zoé;{numens[1]};12/03/1981;0110001S;enseignant;z@example.org\r\n".encode(),
        f"Martin;Jean;{numens[2]};01/01/1970;0300001N;Personnel de direction;j1@example.org\r\n".encode(),
        f"Martin;Jean;{numens[3]};02/02/1972;0480001R;inspecteur;j2@example.org\r\n".encode(),
    ]
    bad = [
        f"Durand;Paul;{make_numen()};31/02/1970;0340001S;enseignant;p@example.org\r\n".encode(),  # date
        b"Petit;Anne;11E95;01/01/1970;0340001S;enseignant;a@example.org\r\n",  # NUMEN
        b"Roux;Luc\r\n",  # broken line
        f"Inconnu;Luc;{make_numen()};01/01/1970;0349999Z;enseignant;l@example.org\r\n".encode(),  # unknown UAI
        f"Lefèvre;Hélène;{numens[0]};12/03/1980;0340001S;enseignant;h@example.org\r\n".encode(),  # duplicate
    ]
    path = tmp_path / "export-rh.csv"
    path.write_bytes(
        HEADER.encode("cp1252") + b"".join(good[:2]) + bad[0] + good[2] + b"".join(bad[1:]) + good[3]
    )
    report = tmp_path / "rejets.csv"
    status = admin.main(
        ["--address", harness.address, "--operator", "rh", "import", str(path), "--report", str(report)]
    )
    out = capsys.readouterr().out
    assert status == 2
    assert "Créés : 4" in out and "rejetés : 5" in out
    rejected = report.read_text(encoding="utf-8").splitlines()
    assert len(rejected) == 6  # header + 5
    assert any("impossible" in line for line in rejected) and any("Doublon" in line for line in rejected)
    assert any("Établissement inconnu" in line for line in rejected)
    assert all(n not in report.read_text(encoding="utf-8") for n in numens)
    c = harness.client
    assert c.resolve_recipient("helene.lefevre@ac-montpellier.fr").deliverable
    assert c.resolve_recipient("zoe.noel@ac-montpellier.fr").deliverable
    assert c.resolve_recipient("jean.martin2@ac-montpellier.fr").deliverable
    count = harness.directory.accounts.count_documents({})

    # Re-import: nothing new; a changed recovery address is an update.
    path.write_bytes(path.read_bytes().replace(b"z@example.org", b"zoe@example.org"))
    admin.main(["--address", harness.address, "import", str(path)])
    out = capsys.readouterr().out
    assert "Créés : 0" in out and "mis à jour : 1" in out and "inchangés : 3" in out
    assert harness.directory.accounts.count_documents({}) == count


def test_cli_commands(harness, capsys):
    run = lambda *args: admin.main(["--address", harness.address, "--operator", "ops", *args])  # noqa: E731
    person = make_person()
    assert (
        run(
            "create",
            "--nom",
            person.last_name,
            "--prenom",
            person.first_name,
            "--numen",
            person.numen,
            "--naissance",
            person.birth_date,
            "--etablissement",
            "0340001S",
            "--fonction",
            "enseignant",
            "--secours",
            "c@example.org",
        )
        == 0
    )
    assert "camille.martin@ac-montpellier.fr" in capsys.readouterr().out
    assert run("maintenance", "on", "--message", "Migration") == 0
    assert "ACTIVE" in capsys.readouterr().out
    assert run("maintenance", "off") == 0 and run("maintenance", "status") == 0
    for verb in ("suspend", "unsuspend", "delete", "restore", "reset-first-login"):
        assert run(verb, "camille.martin") == 0, verb
    assert run("alias", "camille.martin", "cm") == 0
    assert run("show", "cm@ac-montpellier.fr") == 0
    assert "DSDEN de l'Hérault" in capsys.readouterr().out
    assert run("purge") == 0 and run("audit", "--limit", "5") == 0
    assert run("suspend", "personne.inconnue") == 1
    assert "Aucun compte" in capsys.readouterr().out
