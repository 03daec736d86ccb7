"""Unit tests: NUMEN, dates of birth, names, UAI codes and recovery addresses."""

import datetime as dt

import pytest

from directory.exceptions import InvalidInput
from directory.validation import (
    normalize_numen,
    normalize_uai,
    parse_birth_date,
    uai_check_letter,
    validate_email,
    validate_name,
)

TODAY = dt.date(2026, 11, 26)


@pytest.mark.parametrize("raw", ["11E9501234ABC", "11e9501234abc", " 11 E 95 01234ABC ", "01G0012345XYZ"])
def test_valid_numen(raw):
    assert normalize_numen(raw) == raw.replace(" ", "").upper()


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "11E9501234AB",
        "11E9501234ABCD",
        "1XE9501234ABC",
        "11E95012345BC",
        "11E95O1234ABC",
        "11E9501234AB1",
        "ABCDEFGHIJKLM",
        "1234567890123",
    ],
)
def test_malformed_numen(raw):
    with pytest.raises(InvalidInput):
        normalize_numen(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("17/05/1984", dt.date(1984, 5, 17)),
        ("1984-05-17", dt.date(1984, 5, 17)),
        ("7.5.1984", dt.date(1984, 5, 7)),
        ("29/02/1988", dt.date(1988, 2, 29)),
    ],
)
def test_birth_dates(raw, expected):
    assert parse_birth_date(raw, TODAY) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("31/02/1980", "impossible"),
        ("29/02/1981", "impossible"),
        ("00/01/1980", "impossible"),
        ("12/13/1980", "impossible"),
        ("01/01/2030", "futur"),
        ("01/01/2020", "invraisemblable"),
        ("01/01/1900", "invraisemblable"),
        ("hier", "illisible"),
        ("", "manquante"),
        ("1980/01/01", "illisible"),
    ],
)
def test_impossible_birth_dates(raw, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        parse_birth_date(raw, TODAY)


def test_names():
    assert validate_name("  Marie   Hélène ", "prénom") == "Marie Hélène"
    assert validate_name("N'Diaye", "nom") == "N'Diaye"
    for bad in ["", "R2D2", "Martin;DROP", "-Martin"]:
        with pytest.raises(InvalidInput):
            validate_name(bad, "nom")


def test_uai():
    assert uai_check_letter("0340001") == "S"
    assert normalize_uai(" 0340001s ") == "0340001S"
    for bad in ["", "034001S", "03400012", "A340001S"]:
        with pytest.raises(InvalidInput):
            normalize_uai(bad)


def test_email():
    assert validate_email("Camille.Martin@Example.ORG") == "Camille.Martin@example.org"
    for bad in ["", "camille", "camille@", "a b@example.org", "x@localhost"]:
        with pytest.raises(InvalidInput):
            validate_email(bad)
