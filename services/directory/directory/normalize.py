"""Text normalisation for names: accent folding, mail address local parts and search tokens.

Addresses follow the academy's convention `prenom.nom@domain`: lower case, accents folded (é→e, ç→c,
œ→oe, æ→ae, ß→ss), compound first and last names kept with hyphens ("Jean-Pierre" → "jean-pierre"),
spaces inside a name become hyphens ("Le Goff" → "le-goff"), apostrophes are dropped ("N'Diaye" →
"ndiaye", "D'Almeida" → "dalmeida"), anything else outside [a-z0-9-] disappears. Homonyms get a numeric
suffix on the last name part, allocated once and stored (see `local_part`).

Search tokens use the same folding, split on every separator, so that "le goff", "goff" and "Le-Goff" all
find Yann Le Goff.
"""

from __future__ import annotations

import re
import unicodedata

# Letters NFKD does not decompose into an ASCII base letter.
_SPECIAL = str.maketrans(
    {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ø": "o", "Ø": "O", "ł": "l"}
)
_APOSTROPHES = re.compile(r"[’'`´ʼ‘]")
_SEPARATORS = re.compile(r"[\s_\-‐‑–—.]+")
_NOT_ALLOWED = re.compile(r"[^a-z0-9-]")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower-case ASCII form of `text`: accents removed, ligatures spelled out."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.lower()


def name_part(name: str) -> str:
    """One half of an address local part, from a first or last name ("Marie Hélène" → "marie-helene")."""
    folded = fold(_APOSTROPHES.sub("", name.strip()))
    hyphenated = _SEPARATORS.sub("-", folded)
    cleaned = _NOT_ALLOWED.sub("", hyphenated)
    return re.sub(r"-{2,}", "-", cleaned).strip("-")


def base_local_part(first_name: str, last_name: str) -> str:
    """`prenom.nom` without any homonym suffix; raises ValueError when a name has no usable letter."""
    first, last = name_part(first_name), name_part(last_name)
    if not first or not last:
        raise ValueError("name without usable letters")
    return f"{first}.{last}"


def local_part(base: str, homonym_rank: int) -> str:
    """The local part of the `homonym_rank`-th person (1-based) sharing `base`: the first keeps it bare,
    the next ones get 2, 3, … appended ("jean.martin", "jean.martin2")."""
    return base if homonym_rank <= 1 else f"{base}{homonym_rank}"


def tokens(*texts: str) -> list[str]:
    """Distinct search words of `texts`, folded, in order of appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in _WORD_SPLIT.split(fold(_APOSTROPHES.sub("", text or ""))):
            if word:
                seen.setdefault(word, None)
    return list(seen)


def query_words(query: str) -> list[str]:
    """The words of a search query, folded the way `tokens` folds names (apostrophes dropped)."""
    return tokens(query)


def display_name(first_name: str, last_name: str) -> str:
    """How a person is shown: "Camille MARTIN" (the administration's habit: surname in capitals)."""
    return f"{first_name.strip()} {last_name.strip().upper()}"


def clean_name(name: str) -> str:
    """A name as typed, spacing normalised, NFC-composed ("  jean  -  pierre " → "jean - pierre")."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", name)).strip()
