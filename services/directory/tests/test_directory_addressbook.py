"""Unit tests: the in-memory address book (prefix search, filters, paging)."""

from directory.addressbook import AddressBook, Entry
from directory.normalize import fold, tokens


def entry(i, first, last, dep="34", function="enseignant", uai="0340001S"):
    return Entry(
        f"id{i:03d}",
        f"{i}@x",
        f"{first} {last.upper()}",
        f"{fold(last)} {fold(first)}",
        tuple(tokens(last, first)),
        uai,
        dep,
        function,
    )


def book():
    b = AddressBook()
    b.replace_all(
        [
            entry(1, "Camille", "Martin"),
            entry(2, "Camille", "Martin", dep="30"),
            entry(3, "Marie", "Martinez"),
            entry(4, "Yann", "Le Goff", function="direction"),
            entry(5, "Hélène", "Lefèvre", dep="11"),
            entry(6, "Aïcha", "N'Diaye", dep="66"),
        ]
    )
    return b


def test_prefix_accent_and_case_insensitive():
    b = book()
    assert {e.account_id for e in b.search("mart")[0]} == {"id001", "id002", "id003"}
    assert [e.account_id for e in b.search("HELENE")[0]] == ["id005"]
    assert [e.account_id for e in b.search("lefe")[0]] == ["id005"]
    assert [e.account_id for e in b.search("goff")[0]] == ["id004"]
    assert [e.account_id for e in b.search("n'diaye")[0]] == ["id006"]
    assert [e.account_id for e in b.search("cam mar", departement="30")[0]] == ["id002"]
    assert b.search("zzz") == ([], 0)


def test_filters_and_paging():
    b = book()
    page, total = b.search("", departement="34", limit=2)
    assert total == 3 and len(page) == 2
    rest, _ = b.search("", departement="34", offset=2, limit=2)
    assert not {e.account_id for e in page} & {e.account_id for e in rest}
    assert [e.account_id for e in b.search("", function="direction")[0]] == ["id004"]


def test_upsert_and_remove():
    b = book()
    b.upsert(entry(7, "Zoé", "Martin"))
    assert b.search("zoe")[1] == 1
    b.remove("id007")
    b.remove("id005")
    assert b.search("zoe")[1] == 0 and b.search("lefevre")[1] == 0
    assert b.search("mart")[1] == 3
