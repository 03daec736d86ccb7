"""Unit tests: parsing HR exports in UTF-8, Windows-1252 and mixed encodings, with broken lines."""

import datetime as dt

import pytest

from directory.exceptions import InvalidInput
from directory.importer import parse_hr_export
from directory.synthetic import establishments, hr_export_csv, people

TODAY = dt.date(2026, 11, 26)
HEADER = "nom;prénom;NUMEN;date de naissance;établissement;fonction;adresse de secours\r\n"


def test_utf8_with_bom_and_cp1252_give_the_same_rows():
    body = "Lefèvre;Hélène;11E9501234ABC;12/03/1980;0340001S;Enseignante;h@example.org\r\n"
    utf8 = parse_hr_export(b"\xef\xbb\xbf" + (HEADER + body).encode("utf-8"), TODAY)
    cp1252 = parse_hr_export((HEADER + body).encode("cp1252"), TODAY)
    assert utf8.requests == cp1252.requests
    assert utf8.requests[0].last_name == "Lefèvre" and utf8.requests[0].first_name == "Hélène"
    assert utf8.requests[0].function == "enseignant"
    assert cp1252.encodings == {"cp1252"} and utf8.encodings == {"utf-8"}


def test_mixed_encodings_line_by_line():
    data = (
        HEADER.encode()
        + "Lefèvre;Hélène;11E9501234ABC;12/03/1980;0340001S;enseignant;h@example.org\n".encode("cp1252")
        + "Noël;Zoé;11E9501234ABD;12/03/1981;0340001S;enseignant;z@example.org\n".encode()
    )
    parsed = parse_hr_export(data, TODAY)
    assert [(r.last_name, r.first_name) for r in parsed.requests] == [("Lefèvre", "Hélène"), ("Noël", "Zoé")]
    assert not parsed.rejections


def test_broken_lines_are_reported_with_reasons():
    lines = [
        "Martin;Camille;11E9501234ABC;17/05/1984;0340001S;enseignant;c@example.org",  # 2 ok
        "Martin;Camille;11E9501234ABC;17/05/1984",  # 3 too few fields
        "Dupont;Jean;11E95;01/01/1970;0340001S;enseignant;j@example.org",  # 4 malformed NUMEN
        "Durand;Paul;11E9501234ABD;31/02/1970;0340001S;enseignant;p@example.org",  # 5 impossible date
        'Petit;"Anne;11E9501234ABE;01/01/1970;0340001S;enseignant;a@example.org',  # 6 unbalanced quote
        "Roux;Luc;11E9501234ABF;01/01/1970;0340001S;astronaute;l@example.org",  # 7 unknown function
        "Morel;Léa;11E9501234ABG;01/01/1970;0340001S;enseignant;pas-une-adresse",  # 8 bad recovery address
        "Martin;Camille;11e9501234abc;17/05/1984;0340001S;enseignant;c@example.org",  # 9 duplicate person
        "",  # blank: ignored
        "Vidal;Éric;11E9501234ABH;01/01/1970;03400;enseignant;e@example.org",  # 11 bad UAI
    ]
    data = (HEADER + "\n".join(lines) + "\n").encode() + b"Bad\x81;x;y;z;w;v;u\n"
    parsed = parse_hr_export(data, TODAY)
    assert [r.line for r in parsed.requests] == [2]
    reasons = {r.line: r.reason for r in parsed.rejections}
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 9, 11, 12}
    assert "Nombre de champs" in reasons[3]
    assert "NUMEN" in reasons[4]
    assert "impossible" in reasons[5]
    assert "Fonction inconnue" in reasons[7]
    assert "secours" in reasons[8]
    assert "Doublon" in reasons[9] and "ligne 2" in reasons[9]
    assert "UAI" in reasons[11]
    assert "encodage" in reasons[12]
    assert all("11E95" not in r.reason for r in parsed.rejections)  # the NUMEN never appears in a report


def test_comma_delimiter_and_header_variants():
    data = b"Nom,Prenom,Numen,Date_Naissance,UAI,Fonction,Email de secours\nMartin,Camille,11E9501234ABC,1984-05-17,0340001S,inspecteur,c@example.org\n"
    parsed = parse_hr_export(data, TODAY)
    assert parsed.requests[0].function == "inspecteur"


def test_missing_header_columns():
    with pytest.raises(InvalidInput, match="colonnes manquantes"):
        parse_hr_export(b"nom;prenom\nMartin;Camille\n", TODAY)
    with pytest.raises(InvalidInput):
        parse_hr_export(b"", TODAY)


def test_synthetic_export_round_trip_in_cp1252():
    ests = establishments(30, seed=7)
    staff = list(people(200, ests, seed=7))
    parsed = parse_hr_export(hr_export_csv(staff).encode("cp1252"), TODAY)
    assert len(parsed.requests) == 200, parsed.rejections[:3]


def test_request_repr_hides_numen():
    data = (HEADER + "Martin;Camille;11E9501234ABC;17/05/1984;0340001S;enseignant;c@example.org\n").encode()
    assert "11E95" not in repr(parse_hr_export(data, TODAY).requests[0])
