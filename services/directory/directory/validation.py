"""Validation of the identity data an administrator or a user types: NUMEN, dates of birth, names, UAI
codes and recovery addresses. Every error carries a French message ready for an import report or a form.

NUMEN structure (13 characters, always upper case), as documented publicly for the Éducation nationale:
2 digits for the academy of registration (01–33, 43), 1 letter for the information system (G first
degree, E public secondary, P private secondary, A administrative staff…), 2 digits for the year of entry,
then 8 characters "five digits and three letters" — in practice the digits first ("01 E 95 01234ABC").
We check exactly that shape (`\\d{2}[A-Z]\\d{7}[A-Z]{3}`) after removing spaces and upper-casing; we do not
restrict the academy code, since staff move between academies and keep their NUMEN.
"""

from __future__ import annotations

import datetime as dt
import re

from directory.exceptions import InvalidInput

NUMEN_RE = re.compile(r"^\d{2}[A-Z]\d{7}[A-Z]{3}$")
UAI_RE = re.compile(r"^\d{7}[A-Z]$")
# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is the notifier's business.
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_NAME_RE = re.compile(r"^[^\W\d_](?:[^\W\d_]|[ '’\-])*$", re.UNICODE)

MIN_AGE_YEARS = 16
MAX_AGE_YEARS = 100


def normalize_numen(raw: str) -> str:
    """The NUMEN in canonical form (upper case, no spaces); raises InvalidInput if malformed."""
    numen = re.sub(r"[\s.\-]", "", raw or "").upper()
    if not numen:
        raise InvalidInput("NUMEN manquant.")
    if len(numen) != 13:
        raise InvalidInput("NUMEN invalide : il doit compter 13 caractères.")
    if not NUMEN_RE.match(numen):
        raise InvalidInput("NUMEN invalide : format attendu 2 chiffres, 1 lettre, 7 chiffres, 3 lettres.")
    return numen


def looks_like_numen(raw: str) -> bool:
    """True when `raw` has the NUMEN's shape (used to spot a NUMEN typed where it does not belong)."""
    try:
        normalize_numen(raw)
    except InvalidInput:
        return False
    return True


def parse_birth_date(raw: str, today: dt.date | None = None) -> dt.date:
    """A date of birth from "JJ/MM/AAAA", "JJ-MM-AAAA" or "AAAA-MM-JJ"; raises InvalidInput when it is
    malformed, impossible (31/02), in the future, or gives an age outside 16–100 years."""
    text = (raw or "").strip()
    if not text:
        raise InvalidInput("Date de naissance manquante.")
    match = re.fullmatch(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})", text)
    if match:
        day, month, year = (int(g) for g in match.groups())
    else:
        match = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
        if not match:
            raise InvalidInput("Date de naissance illisible : format attendu JJ/MM/AAAA.")
        year, month, day = (int(g) for g in match.groups())
    try:
        date = dt.date(year, month, day)
    except ValueError:
        raise InvalidInput(f"Date de naissance impossible : {text}.") from None
    today = today or dt.date.today()
    age = today.year - date.year - ((today.month, today.day) < (date.month, date.day))
    if date > today:
        raise InvalidInput("Date de naissance dans le futur.")
    if age < MIN_AGE_YEARS or age > MAX_AGE_YEARS:
        raise InvalidInput(f"Date de naissance invraisemblable pour un personnel : {text}.")
    return date


def validate_name(raw: str, what: str) -> str:
    """A first or last name, spacing normalised; letters, spaces, hyphens and apostrophes only."""
    from directory.normalize import clean_name

    name = clean_name(raw or "")
    if not name:
        raise InvalidInput(f"{what.capitalize()} manquant.")
    if len(name) > 80:
        raise InvalidInput(f"{what.capitalize()} trop long.")
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"{what.capitalize()} invalide : lettres, espaces, traits d'union et apostrophes seulement."
        )
    return name


def normalize_uai(raw: str) -> str:
    """An establishment's UAI code (7 digits and a check letter), upper-cased."""
    uai = (raw or "").strip().upper()
    if not uai:
        raise InvalidInput("Établissement (code UAI) manquant.")
    if not UAI_RE.match(uai):
        raise InvalidInput(f"Code UAI invalide : {uai[:20]} (7 chiffres et une lettre attendus).")
    return uai


def uai_check_letter(seven_digits: str) -> str:
    """The check letter of a UAI: the number modulo 23 in the alphabet without I, O and Q."""
    return "ABCDEFGHJKLMNPRSTUVWXYZ"[int(seven_digits) % 23]


def validate_email(raw: str) -> str:
    """A recovery address, lower-cased; raises InvalidInput when it is not an address."""
    address = (raw or "").strip()
    if not address:
        raise InvalidInput("Adresse de secours manquante.")
    if len(address) > 254 or not EMAIL_RE.match(address):
        raise InvalidInput("Adresse de secours invalide.")
    local, domain = address.rsplit("@", 1)
    return f"{local}@{domain.lower()}"
