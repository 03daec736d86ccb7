"""Personal address book: contacts, groups as recipients, vCard import and export, owner scoping, malformed
files. Runs against the real database (the root conftest's `database` fixture)."""

from __future__ import annotations

import pytest

from webmail.compose import ComposeError
from webmail.contacts import (
    CONTACTS,
    MAX_VCF_BYTES,
    ContactBook,
    ContactInput,
    ContactNotFound,
    InvalidContact,
    VCardImportError,
    expand_recipient_groups,
    fold,
    group_token,
    has_group,
    parse_vcards,
)

ALICE = "alice.martin@ac-montpellier.fr"
BRUNO = "bruno.petit@ac-montpellier.fr"

CARD = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Élodie Durand\r\nN:Durand;Élodie;;;\r\n"
    "EMAIL;TYPE=INTERNET:Elodie.Durand@ac-montpellier.fr\r\nTEL;TYPE=WORK:04 67 91 00 00\r\n"
    "ORG:Collège Jean Moulin;\r\nTITLE:Principale\r\nUID:card-1\r\nEND:VCARD\r\n"
)
CARD_V4 = (
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Hugo Bernard\r\nEMAIL:hugo.bernard@example.org\r\n"
    "NOTE:Intervenant extérieur\r\nEND:VCARD\r\n"
)


@pytest.fixture
def book(database):
    book = ContactBook(database)
    book.ensure_indexes()
    return book


pytestmark = pytest.mark.integration


def test_create_get_update_delete(book):
    contact = book.create(
        ALICE,
        ContactInput(
            given="Jérôme",
            family="Lefèvre",
            emails=["Jerome.Lefevre@ac-montpellier.fr", "jerome.lefevre@ac-montpellier.fr"],
            phones=["+33 4 67 00 00 00"],
            organisation="Lycée Joffre",
            title="Proviseur adjoint",
        ),
    )
    assert contact.name == "Jérôme Lefèvre"
    assert contact.emails == ("jerome.lefevre@ac-montpellier.fr",)
    assert book.get(ALICE, contact.id) == contact
    updated = book.update(ALICE, contact.id, {"title": "Proviseur", "notes": "Bureau 12"})
    assert (updated.title, updated.notes, updated.name) == ("Proviseur", "Bureau 12", "Jérôme Lefèvre")
    book.delete(ALICE, contact.id)
    with pytest.raises(ContactNotFound):
        book.get(ALICE, contact.id)


def test_another_owner_cannot_read_change_or_delete_by_id(book):
    contact = book.create(ALICE, ContactInput("Élodie Durand", emails=["elodie.durand@ac-montpellier.fr"]))
    group = book.create_group(ALICE, "Équipe", [contact.id])
    with pytest.raises(ContactNotFound) as caught:
        book.get(BRUNO, contact.id)
    assert "introuvable" in str(caught.value)
    with pytest.raises(ContactNotFound):
        book.update(BRUNO, contact.id, {"name": "Piraté"})
    with pytest.raises(ContactNotFound):
        book.delete(BRUNO, contact.id)
    with pytest.raises(ContactNotFound):
        book.get_group(BRUNO, group.id)
    with pytest.raises(ContactNotFound):
        book.group_recipients(BRUNO, group.id)
    with pytest.raises(ContactNotFound):
        book.update_group(BRUNO, group.id, name="x")
    with pytest.raises(ContactNotFound):
        book.delete_group(BRUNO, group.id)
    # Bruno cannot put Alice's contact in a group of his own to learn its address.
    with pytest.raises(InvalidContact) as caught:
        book.create_group(BRUNO, "Espion", [contact.id])
    assert "contact inconnu" in str(caught.value)
    assert book.list(BRUNO) == [] and book.search(BRUNO, "Durand") == []
    assert book.get(ALICE, contact.id).name == "Élodie Durand"
    assert book.group_recipients(ALICE, group.id) == ["elodie.durand@ac-montpellier.fr"]


def test_list_is_sorted_and_search_ignores_case_and_accents(book):
    for name, org in (
        ("Zoé Martin", "Rectorat"),
        ("émile Roux", "DSDEN de l'Hérault"),
        ("Anne Vidal", "Lycée Joffre"),
    ):
        book.create(ALICE, ContactInput(name, organisation=org))
    assert [c.name for c in book.list(ALICE)] == ["Anne Vidal", "émile Roux", "Zoé Martin"]
    assert [c.name for c in book.search(ALICE, "EMILE")] == ["émile Roux"]
    assert [c.name for c in book.search(ALICE, "herault")] == ["émile Roux"]
    assert [c.name for c in book.search(ALICE, "lycee vid")] == ["Anne Vidal"]
    assert book.search(ALICE, ".*") == []  # regex characters are literal
    assert fold("Élodie Ærø") == "elodie ærø"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (ContactInput(), "au moins un nom"),
        (ContactInput("A", emails=["pas une adresse"]), "adresse électronique invalide"),
        (ContactInput("A", phones=["appelle-moi"]), "téléphone invalide"),
        (ContactInput("A" * 501), "trop long"),
        (ContactInput("A", emails=[f"a{i}@x.fr" for i in range(11)]), "trop d'adresses"),
    ],
)
def test_invalid_contacts_are_refused_in_french(book, database, data, expected):
    with pytest.raises(InvalidContact) as caught:
        book.create(ALICE, data)
    assert expected in str(caught.value)
    assert database[CONTACTS].count_documents({}) == 0


def test_groups_give_recipients(book):
    a = book.create(ALICE, ContactInput("A", emails=["a@ac-montpellier.fr", "a2@ac-montpellier.fr"]))
    b = book.create(ALICE, ContactInput("B", emails=["b@ac-montpellier.fr"]))
    c = book.create(ALICE, ContactInput("C sans adresse", phones=["0467000000"]))
    group = book.create_group(
        ALICE, "Conseil pédagogique", [a.id, b.id, c.id, "Ext@Example.org", "b@ac-montpellier.fr"]
    )
    assert book.group_recipients(ALICE, group.id) == [
        "a@ac-montpellier.fr",
        "b@ac-montpellier.fr",
        "ext@example.org",
    ]
    book.delete(ALICE, b.id)  # leaves the group; the raw address stays
    assert book.get_group(ALICE, group.id).contact_ids == (a.id, c.id)
    assert book.group_recipients(ALICE, group.id) == [
        "a@ac-montpellier.fr",
        "ext@example.org",
        "b@ac-montpellier.fr",
    ]
    renamed = book.update_group(ALICE, group.id, name="CP", members=[a.id])
    assert renamed.name == "CP" and book.group_recipients(ALICE, group.id) == ["a@ac-montpellier.fr"]
    assert [g.name for g in book.list_groups(ALICE)] == ["CP"]
    with pytest.raises(InvalidContact):
        book.create_group(ALICE, "Mauvais", ["pas@une adresse"])
    with pytest.raises(InvalidContact):
        book.create_group(ALICE, "   ")
    book.delete_group(ALICE, group.id)
    assert book.list_groups(ALICE) == []


def test_vcard_round_trip_and_import_twice(book):
    report = book.import_vcards(ALICE, (CARD + CARD_V4).encode())
    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)
    elodie = book.search(ALICE, "durand")[0]
    assert elodie.emails == ("elodie.durand@ac-montpellier.fr",)
    assert (elodie.given, elodie.family, elodie.organisation, elodie.title) == (
        "Élodie",
        "Durand",
        "Collège Jean Moulin",
        "Principale",
    )
    assert elodie.phones == ("04 67 91 00 00",)
    again = book.import_vcards(ALICE, (CARD + CARD_V4).encode())
    assert (again.created, again.unchanged) == (0, 2)
    assert len(book.list(ALICE)) == 2

    exported = book.export_vcards(ALICE)
    assert exported.count(b"BEGIN:VCARD") == 2 and b"VERSION:3.0" in exported
    copy = book.import_vcards(BRUNO, exported)
    assert copy.created == 2
    strip = lambda c: (c.uid, c.name, c.given, c.family, c.emails, c.phones, c.organisation, c.title, c.notes)  # noqa: E731
    assert [strip(c) for c in book.list(BRUNO)] == [strip(c) for c in book.list(ALICE)]
    # A changed card updates the contact with the same UID.
    changed = book.import_vcards(
        ALICE, CARD.replace("TITLE:Principale", "TITLE:Principale adjointe").encode()
    )
    assert changed.updated == 1 and book.search(ALICE, "durand")[0].title == "Principale adjointe"


BAD_EMAIL = CARD.replace("Elodie.Durand@ac-montpellier.fr", "pas-une-adresse").replace("card-1", "card-2")
NO_NAME = "BEGIN:VCARD\r\nVERSION:3.0\r\nEND:VCARD\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ((CARD + CARD_V4)[:200].encode(), "mal formé ou tronqué"),
        (b"\x00\x01garbage\xff", "UTF-8"),
        (b"bonjour tout le monde", "BEGIN:VCARD"),
        (b"", "vide"),
        (CARD.replace("VERSION:3.0", "VERSION:2.1").encode(), "version vCard non prise en charge (2.1)"),
        (CARD.replace("VERSION:3.0\r\n", "").encode(), "version vCard non prise en charge (absente)"),
        ((CARD + BAD_EMAIL).encode(), "contact n° 2 (« Élodie Durand ») : adresse électronique invalide"),
        ((CARD + NO_NAME).encode(), "au moins un nom"),
        (
            (CARD + "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\nGARBAGE LINE\r\nEND:VCARD\r\n").encode(),
            "mal formé",
        ),
        (b"BEGIN:VCARD\r\n" + b"NOTE:" + b"x" * MAX_VCF_BYTES, "trop volumineux"),
    ],
)
def test_malformed_vcards_are_refused_and_nothing_is_written(book, database, data, expected):
    with pytest.raises(VCardImportError) as caught:
        book.import_vcards(ALICE, data)
    assert expected in str(caught.value)
    assert database[CONTACTS].count_documents({}) == 0


def test_too_many_cards_are_refused():
    with pytest.raises(VCardImportError) as caught:
        parse_vcards(CARD * 5001)
    assert "trop de contacts" in str(caught.value)


def test_group_names_are_unique_per_owner_and_usable_in_a_recipient_field(book):
    group = book.create_group(ALICE, "Équipe de direction")
    for name, expected in (
        ("equipe DE  direction", "déjà un groupe nommé"),
        ("Direction, vie scolaire", "ni virgule"),
        ('Les "profs"', "ni virgule"),
        ("x" * 101, "trop long"),
    ):
        with pytest.raises(InvalidContact) as caught:
            book.create_group(ALICE, name)
        assert expected in str(caught.value)
    assert book.create_group(BRUNO, "Équipe de direction").name == "Équipe de direction"  # Bruno's own
    assert book.update_group(ALICE, group.id, name="Équipe de Direction").name == "Équipe de Direction"
    assert book.find_group(ALICE, "EQUIPE de direction").id == group.id
    with pytest.raises(ContactNotFound):
        book.find_group(ALICE, "Conseil")
    assert group_token(book.get_group(ALICE, group.id)) == "Groupe : Équipe de Direction (0)"


def test_members_are_added_removed_and_named_for_sending(book):
    anne = book.create(ALICE, ContactInput("Anne Vidal", emails=["anne.vidal@ac-montpellier.fr"]))
    paul = book.create(ALICE, ContactInput("Paul Roux", emails=["paul.roux@ac-montpellier.fr"]))
    group = book.create_group(ALICE, "Conseil", [anne.id])
    book.add_members(ALICE, group.id, [paul.id, anne.id, "Ext@Example.org"])
    assert book.group_members(ALICE, group.id) == [
        ("Anne Vidal", "anne.vidal@ac-montpellier.fr"),
        ("Paul Roux", "paul.roux@ac-montpellier.fr"),
        ("", "ext@example.org"),
    ]
    book.remove_members(ALICE, group.id, [anne.id, "EXT@example.org"])
    assert book.group_recipients(ALICE, group.id) == ["paul.roux@ac-montpellier.fr"]
    assert book.get(ALICE, anne.id).name == "Anne Vidal"  # removing from a group keeps the contact
    # Another owner's ids are skipped by get_many and refused by add_members.
    assert book.get_many(BRUNO, [anne.id, paul.id]) == []
    bruno_group = book.create_group(BRUNO, "Espion")
    with pytest.raises(InvalidContact):
        book.add_members(BRUNO, bruno_group.id, [anne.id])
    with pytest.raises(ContactNotFound):
        book.add_members(BRUNO, group.id, ["x@example.org"])


def test_expanding_groups_in_recipient_fields(book):
    anne = book.create(ALICE, ContactInput("Anne Vidal", emails=["anne.vidal@ac-montpellier.fr"]))
    book.create_group(ALICE, "Équipe de direction", [anne.id, "ext@example.org"])
    book.create_group(ALICE, "Vide")
    fields = {
        "a": "Groupe : Équipe de direction (2), louis@x.fr",
        "cc": "",
        "cci": "groupe:equipe de direction",
    }
    assert has_group(fields["a"]) and not has_group("Groupe <groupe@x.fr>") and not has_group("")
    expanded = expand_recipient_groups(book, ALICE, fields)
    assert expanded["a"] == "Anne Vidal <anne.vidal@ac-montpellier.fr>, ext@example.org, louis@x.fr"
    assert expanded["cci"] == "Anne Vidal <anne.vidal@ac-montpellier.fr>, ext@example.org"
    with pytest.raises(ComposeError) as caught:
        expand_recipient_groups(book, ALICE, {"a": "Groupe : Vide (0)"})
    assert "le groupe « Vide » n'a aucun membre" in str(caught.value)
    with pytest.raises(ComposeError) as caught:
        expand_recipient_groups(book, BRUNO, fields)  # Alice's group is unknown to Bruno
    assert "À : groupe de contacts inconnu « Équipe de direction »" in str(caught.value)


def test_preview_writes_nothing_and_export_of_a_group(book, database):
    report = book.preview_vcards(ALICE, (CARD + CARD_V4).encode())
    assert (report.created, report.total, report.created_names) == (2, 2, ["Élodie Durand", "Hugo Bernard"])
    assert database[CONTACTS].count_documents({}) == 0
    book.import_vcards(ALICE, CARD.encode())
    changed = CARD.replace("TITLE:Principale", "TITLE:Principale adjointe") + CARD_V4
    report = book.preview_vcards(ALICE, changed.encode())
    assert (report.created, report.updated, report.updated_names) == (1, 1, ["Élodie Durand"])
    assert book.search(ALICE, "durand")[0].title == "Principale"
    elodie = book.search(ALICE, "durand")[0]
    group = book.create_group(ALICE, "Principaux", [elodie.id, "ext@example.org"])
    exported = book.export_vcards(ALICE, group.id)
    assert exported.count(b"BEGIN:VCARD") == 2 and b"ext@example.org" in exported
    copy = book.import_vcards(BRUNO, exported)  # the export of a group imports back
    assert copy.created == 2
    with pytest.raises(ContactNotFound):
        book.export_vcards(BRUNO, group.id)
