"""Unit tests: the password policy and argon2id hashing."""

import pytest

from directory.passwords import Hasher, check_password, common_passwords, numen_candidates


@pytest.mark.parametrize(
    "password",
    ["Tr0ub4dour&Garrigue", "Cigale#Pinède2031", "le mistral souffle sur la garrigue", "Vx9!kq2#Lm4$"],
)
def test_acceptable(password):
    verdict = check_password(password, first_name="Camille", last_name="Martin", identifier="camille.martin")
    assert verdict.acceptable, verdict.problems


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("Court1!", "au moins 12"),
        ("toutenminuscules1!", "majuscule"),
        ("SANSMINUSCULE12!", "minuscule"),
        ("SansChiffre!!xx", "chiffre"),
        ("SansSpecial12ab", "caractère spécial"),
        ("Camille#Jardin2026", "nom"),
        ("xx-Martin-2026-Yy!", "nom"),
        ("camille.martin#AB12", "nom"),
        ("Password123!", "courant"),
        ("Azerty123456!", "courant"),
        ("motdepasse", "courant"),
        ("a b c d e f g h i j k", "phrase de passe"),
    ],
)
def test_refused(password, fragment):
    verdict = check_password(password, first_name="Camille", last_name="Martin", identifier="camille.martin")
    assert not verdict.acceptable
    assert any(fragment in p for p in verdict.problems), verdict.problems


def test_numen_inside_password_refused():
    verdict = check_password("Xy#11E9501234ABC!", numen="11E9501234ABC")
    assert any("NUMEN" in p for p in verdict.problems)
    assert numen_candidates("Xy#11e9501234abc!") == ["11E9501234ABC"]
    assert numen_candidates("Tr0ub4dour&Garrigue") == []


def test_common_list_is_large_and_has_french_entries():
    common = common_passwords()
    assert len(common) > 30000
    assert {"123456", "azerty", "motdepasse", "soleil"} <= common


def test_argon2id_hash_and_verify():
    hasher = Hasher(time_cost=1, memory_kib=1024, parallelism=1)
    hashed = hasher.hash("Tr0ub4dour&Garrigue")
    assert hashed.startswith("$argon2id$")
    assert "Tr0ub4dour" not in hashed
    assert hasher.verify(hashed, "Tr0ub4dour&Garrigue")
    assert not hasher.verify(hashed, "tr0ub4dour&Garrigue")
    assert not hasher.verify(None, "x")
    assert not hasher.verify("not-a-hash", "x")
    assert Hasher(time_cost=2, memory_kib=1024, parallelism=1).needs_rehash(hashed)
