"""Integration tests of lookups over gRPC (recipient resolution, address-book search with paging,
contact cards, reference data), the demo seeding (idempotent), and the real `python -m directory`
process (health, metrics, graceful SIGTERM)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from common.config import get_settings
from directory.client import DirectoryClient, DirectoryUnavailable
from directory.demo import DEMO_ACCOUNTS, seed_demo
from directory.testing import TEST_ESTABLISHMENTS, DirectoryHarness, make_person
from tests.helpers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def harness(database):
    with DirectoryHarness(database) as h:
        h.directory.load_establishments(TEST_ESTABLISHMENTS)
        yield h


def test_resolve_recipient_states(harness):
    c = harness.client
    _, _, active = c.create_account(make_person())
    _, _, suspended = c.create_account(make_person(first_name="Paul"))
    _, _, deleted = c.create_account(make_person(first_name="Zoé"))
    c.admin("suspend", suspended.address)
    c.admin("delete", deleted.address)
    r = c.resolve_recipient(" CAMILLE.MARTIN@ac-montpellier.fr ")
    assert r.deliverable and r.account_id == active.account_id and r.quota_bytes == 1073741824
    assert r.display_name == "Camille MARTIN"
    assert c.resolve_recipient("paul.martin@ac-montpellier.fr").state == "SUSPENDED"
    assert c.resolve_recipient("zoe.martin@ac-montpellier.fr").state == "DELETED"
    assert c.resolve_recipient("nobody@ac-montpellier.fr").state == "UNKNOWN"
    assert c.resolve_recipient("camille.martin@example.org").state == "UNKNOWN"
    assert c.resolve_recipient("").state == "UNKNOWN"


def test_search_filters_paging_and_contact_card(harness):
    c = harness.client
    people = [
        ("Camille", "Martin", "0340001S", "enseignant"),
        ("Camille", "Martin", "0110001S", "enseignant"),
        ("Marie", "Martinez", "0300001N", "direction"),
        ("Hélène", "Lefèvre", "0480001R", "inspecteur"),
        ("Yann", "Le Goff", "0660001T", "enseignant"),
        ("Aïcha", "N'Diaye", "0340001S", "administratif"),
    ] + [(f"Jean-{chr(65 + i)}", "Durand", "0340001S", "enseignant") for i in range(25)]
    for first, last, uai, function in people:
        c.create_account(
            make_person(first_name=first, last_name=last, establishment_uai=uai, function=function)
        )
    found = c.search("mart")
    assert found.total == 3 and {x.display_name for x in found.contacts} == {
        "Camille MARTIN",
        "Marie MARTINEZ",
    }
    assert [x.address for x in c.search("HELENE lefe").contacts] == ["helene.lefevre@ac-montpellier.fr"]
    assert c.search("goff").contacts[0].establishment_name == "Université de Perpignan (site 1)"
    assert c.search("ndiaye").total == 1 and c.search("n'diaye").total == 1
    assert c.search("camille", departement="11").total == 1
    assert c.search("", function="direction").contacts[0].function_label == "Personnel de direction"
    assert c.search("", establishment_uai="0340001s").total == 27

    seen, token, pages = [], "", 0
    while True:
        page = c.search("durand", page_size=10, page_token=token)
        seen += [x.account_id for x in page.contacts]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 25

    card = c.contact_card("helene.lefevre@ac-montpellier.fr")
    assert card.function_label == "Inspecteur" and card.commune == "Mende"
    assert card.departement_name == "Lozère" and "DSDEN de la Lozère" in card.help_contact
    assert "fictives" in card.help_contact
    assert c.contact_card(card.account_id).address == card.address
    assert c.contact_card("personne@ac-montpellier.fr") is None


def test_reference_data(harness):
    ref = harness.client.reference()
    assert [d.code for d in ref.departements] == ["11", "30", "34", "48", "66"]
    assert {d.name for d in ref.departements} >= {"Aude", "Gard", "Hérault", "Lozère", "Pyrénées-Orientales"}
    assert all(d.contact_synthetic for d in ref.departements)
    assert "enseignant" in {f.code for f in ref.functions} and ref.establishment_count == 5


def test_seed_demo_is_idempotent(database):
    with DirectoryHarness(database) as h:
        first = seed_demo(h.directory, establishments=60, staff=400, demo_password="Montpellier-Demo-2026!")
        count = h.directory.accounts.count_documents({})
        second = seed_demo(h.directory, establishments=60, staff=400, demo_password="Montpellier-Demo-2026!")
        assert second["synthetic_added"] == 0 and h.directory.accounts.count_documents({}) == count == 404
        assert first["demo"] == second["demo"]
        c = h.client
        ok = c.authenticate("camille.martin@ac-montpellier.fr", "Montpellier-Demo-2026!")
        assert ok.result == "OK" and ok.account.synthetic
        for demo in DEMO_ACCOUNTS[1:]:
            address = dict((d.numen, a) for d, a in first["demo"])[demo.numen]
            assert c.authenticate(address, demo.numen).result == "PASSWORD_CHANGE_REQUIRED"
        assert c.search("martin camille").total >= 2  # homonyms of the demo account in the synthetic academy
        assert h.directory.accounts.count_documents({"synthetic": True}) == 404


def test_python_m_directory_serves_and_stops_on_sigterm(database):
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "DIRECTORY_ADDRESS": f"127.0.0.1:{grpc_port}",
        "DIRECTORY_METRICS_PORT": str(metrics_port),
        "DATABASE_NAME": database.name,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "directory"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        client = DirectoryClient(f"127.0.0.1:{grpc_port}", timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert client.resolve_recipient("x@ac-montpellier.fr").state == "UNKNOWN"
                break
            except DirectoryUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert client.authenticate("x", "y", "10.0.0.1").result == "BAD_CREDENTIALS"
        health = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).read().decode()
        assert '"ok"' in health
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        )
        assert 'directory_authentications_total{result="BAD_CREDENTIALS"}' in metrics
        assert "directory_rpc_seconds_bucket" in metrics
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr[-2000:]
    assert "directory stopping" in stderr
    assert get_settings().mail_domain == "ac-montpellier.fr"


def test_reload_address_book_sees_bulk_loads_of_another_process(harness):
    from directory.demo import bulk_load_people
    from directory.notifier import RecordingNotifier
    from directory.passwords import Hasher
    from directory.service import Directory
    from directory.synthetic import SyntheticPerson

    other = Directory(harness.directory.db, hasher=Hasher(1, 1024, 1), notifier=RecordingNotifier())
    person = SyntheticPerson(
        "Vergès",
        "Noémie",
        "11E2612345ABC",
        dt.date(1980, 1, 1),
        "0340001S",
        "enseignant",
        "n@example.org",
    )
    bulk_load_people(other, [person], numen_hash="-")
    assert harness.client.resolve_recipient("noemie.verges@ac-montpellier.fr").deliverable
    assert harness.client.search("verges").total == 0  # not yet in this server's index
    assert harness.client.reload_address_book() == 1
    assert harness.client.search("verges").total == 1
