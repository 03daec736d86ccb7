"""Parsing of an HR export (CSV) into account requests, with a report of every rejected line.

Columns (any order, header names matched without case or accents): nom, prénom, NUMEN, date de naissance,
établissement (UAI code), fonction, adresse de secours. The delimiter is `;` (French spreadsheets), `,` or
a tab, detected from the header. Each line is decoded on its own, as UTF-8 when it is valid UTF-8 and as
Windows-1252 otherwise, so that a file assembled from several exports with mixed encodings still reads
correctly; a UTF-8 byte-order mark is ignored. Quoted fields may contain the delimiter but not a line
break (HR exports have none). A line is rejected, with its number and a French reason, when it is broken
(wrong number of fields, unbalanced quotes, undecodable bytes) or when a value is invalid; a second line
for the same NUMEN is rejected as a duplicate. The NUMEN is only kept in memory, never in the report.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field

from directory.exceptions import InvalidInput
from directory.normalize import fold
from directory.reference import function_code
from directory.validation import (
    normalize_numen,
    normalize_uai,
    parse_birth_date,
    validate_email,
    validate_name,
)

COLUMNS = ("nom", "prenom", "numen", "date_naissance", "etablissement", "fonction", "adresse_secours")

_HEADER_ALIASES = {
    "nom": "nom",
    "nom de famille": "nom",
    "nom d'usage": "nom",
    "prenom": "prenom",
    "numen": "numen",
    "date de naissance": "date_naissance",
    "date naissance": "date_naissance",
    "date_naissance": "date_naissance",
    "naissance": "date_naissance",
    "etablissement": "etablissement",
    "uai": "etablissement",
    "rne": "etablissement",
    "code uai": "etablissement",
    "fonction": "fonction",
    "adresse de secours": "adresse_secours",
    "adresse_secours": "adresse_secours",
    "courriel de secours": "adresse_secours",
    "email de secours": "adresse_secours",
    "mel de secours": "adresse_secours",
}


@dataclass(frozen=True)
class AccountRequest:
    """A validated request for one account (from a form or a line of an HR export)."""

    last_name: str
    first_name: str
    numen: str
    birth_date: dt.date
    establishment_uai: str
    function: str
    recovery_address: str
    line: int = 0

    def __repr__(self) -> str:  # never show the NUMEN, even in a traceback
        return f"AccountRequest({self.first_name} {self.last_name}, line {self.line})"


@dataclass(frozen=True)
class Rejection:
    """A line of the export that was not imported, and why (French)."""

    line: int
    reason: str


@dataclass
class ParsedExport:
    """The valid requests of an export, and its rejected lines."""

    requests: list[AccountRequest] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    encodings: set[str] = field(default_factory=set)


def validate_request(
    *,
    last_name: str,
    first_name: str,
    numen: str,
    birth_date: str,
    establishment_uai: str,
    function: str,
    recovery_address: str,
    line: int = 0,
    today: dt.date | None = None,
) -> AccountRequest:
    """An AccountRequest from raw values; raises InvalidInput (French) on the first bad value."""
    code = function_code(function)
    if code is None:
        raise InvalidInput(f"Fonction inconnue : {function.strip()[:40]}.")
    return AccountRequest(
        last_name=validate_name(last_name, "nom"),
        first_name=validate_name(first_name, "prénom"),
        numen=normalize_numen(numen),
        birth_date=parse_birth_date(birth_date, today),
        establishment_uai=normalize_uai(establishment_uai),
        function=code,
        recovery_address=validate_email(recovery_address),
        line=line,
    )


def _decode(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp1252"), "cp1252"  # may raise too: undefined bytes 0x81, 0x8D…


def _header(cells: list[str]) -> list[str]:
    names = []
    for cell in cells:
        key = fold(cell).strip().replace("_", " ").replace("-", " ")
        key = " ".join(key.split())
        names.append(_HEADER_ALIASES.get(key, _HEADER_ALIASES.get(key.replace(" ", "_"), key)))
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise InvalidInput("En-tête incomplet : colonnes manquantes " + ", ".join(missing) + ".")
    return names


def parse_hr_export(data: bytes, today: dt.date | None = None) -> ParsedExport:
    """Parse an HR export; raises InvalidInput only when the file as a whole is unusable (no header)."""
    result = ParsedExport()
    lines = data.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    header: list[str] | None = None
    delimiter = ";"
    seen_numens: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            text, encoding = _decode(raw)
        except UnicodeDecodeError:
            if header is None:
                raise InvalidInput("En-tête illisible : encodage inconnu.") from None
            result.rejections.append(Rejection(number, "Ligne illisible : encodage inconnu."))
            continue
        result.encodings.add(encoding)
        if header is None:
            counts = {d: text.count(d) for d in (";", ",", "\t")}
            delimiter = max(counts, key=lambda d: counts[d])
            header = _header(next(csv.reader([text], delimiter=delimiter)))
            continue
        try:
            cells = next(csv.reader([text], delimiter=delimiter, strict=True))
        except csv.Error:
            result.rejections.append(Rejection(number, "Ligne mal formée (guillemets non refermés)."))
            continue
        if len(cells) != len(header):
            result.rejections.append(
                Rejection(number, f"Nombre de champs incorrect : {len(cells)} au lieu de {len(header)}.")
            )
            continue
        values = dict(zip(header, cells, strict=True))
        try:
            request = validate_request(
                last_name=values["nom"],
                first_name=values["prenom"],
                numen=values["numen"],
                birth_date=values["date_naissance"],
                establishment_uai=values["etablissement"],
                function=values["fonction"],
                recovery_address=values["adresse_secours"],
                line=number,
                today=today,
            )
        except InvalidInput as exc:
            result.rejections.append(Rejection(number, str(exc)))
            continue
        first_line = seen_numens.setdefault(request.numen, number)
        if first_line != number:
            result.rejections.append(Rejection(number, f"Doublon : même NUMEN qu'à la ligne {first_line}."))
            continue
        result.requests.append(request)
    if header is None:
        raise InvalidInput("Fichier vide : aucun en-tête.")
    return result
