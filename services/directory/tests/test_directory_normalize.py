"""Unit tests: address local parts and search words from French names."""

import pytest

from directory.normalize import base_local_part, display_name, fold, local_part, tokens


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("Camille", "Martin", "camille.martin"),
        ("Hélène", "Lefèvre", "helene.lefevre"),
        ("Jean-Pierre", "Dupont-Aignan", "jean-pierre.dupont-aignan"),
        ("Marie Hélène", "de La Fontaine", "marie-helene.de-la-fontaine"),
        ("Aïcha", "N'Diaye", "aicha.ndiaye"),
        ("Loïc", "D’Almeida", "loic.dalmeida"),
        ("Lætitia", "Cœur", "laetitia.coeur"),
        ("  François ", " Le  Goff ", "francois.le-goff"),
        ("Zoé", "Castañer", "zoe.castaner"),
        ("Jean--Luc", "Saint - Martin", "jean-luc.saint-martin"),
        ("Jean.", "Müller", "jean.muller"),
    ],
)
def test_base_local_part(first, last, expected):
    assert base_local_part(first, last) == expected


def test_name_without_letters_is_refused():
    with pytest.raises(ValueError):
        base_local_part("'", "Martin")


def test_homonyms_get_numeric_suffix_first_keeps_bare():
    assert local_part("jean.martin", 1) == "jean.martin"
    assert local_part("jean.martin", 2) == "jean.martin2"
    assert local_part("jean.martin", 12) == "jean.martin12"


def test_fold_and_tokens():
    assert fold("ÉLODIE Gaëlle Œuvre") == "elodie gaelle oeuvre"
    assert tokens("Le Goff", "Jean-Pierre") == ["le", "goff", "jean", "pierre"]
    assert tokens("N'Diaye", "Aïcha") == ["ndiaye", "aicha"]


def test_display_name():
    assert display_name("Hélène", "Lefèvre") == "Hélène LEFÈVRE"
