"""Password policy and argon2id hashing of passwords and NUMENs.

Policy, after the CNIL's 2022 recommendation on passwords and ANSSI's guidance — a password is accepted
when it is
  * at least 12 characters long with the four classes (upper case, lower case, digit, special), or
  * a passphrase: at least 20 characters and 4 words,
and in both cases it does not contain the person's first or last name or identifier, does not contain
their NUMEN, and is not one of the most common passwords. The common list is the 30,000 most frequent
passwords shipped by the `zxcvbn` package (Dropbox's estimator, lists derived from public leak corpora),
plus a few French favourites below; nothing is downloaded at run time.

Hashes are argon2id (argon2-cffi); costs come from settings (ARGON2_*), so tests can pass cheap ones
without weakening the production defaults (t=3, m=64 MiB, p=4).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from directory.normalize import fold
from directory.validation import NUMEN_RE

MIN_LENGTH = 12
PASSPHRASE_MIN_LENGTH = 20
PASSPHRASE_MIN_WORDS = 4
MAX_LENGTH = 256

RULES = (
    "Au moins 12 caractères avec des majuscules, des minuscules, des chiffres et des caractères spéciaux, "
    "ou une phrase de passe d'au moins 20 caractères et 4 mots. Ni votre nom, ni votre prénom, ni votre "
    "identifiant, ni votre NUMEN, ni un mot de passe courant."
)

# French favourites the English-leaning list misses, and words of this platform an attacker tries first.
_FRENCH_COMMON = """
azerty azertyuiop azerty123 motdepasse motdepasse1 soleil bonjour doudou loulou chouchou marseille
montpellier nimes perpignan carcassonne mende beziers academie education educationnationale enseignant
professeur rectorat webmail messagerie numen jetaime jesus coucou bisounours nicolas camille chocolat
poisson princesse vacances france toulouse occitanie marianne liberte 123soleil
""".split()


@functools.cache
def common_passwords() -> frozenset[str]:
    """The refused common passwords, lower-cased."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"]) | frozenset(_FRENCH_COMMON)


def _classes(password: str) -> dict[str, bool]:
    return {
        "lower": any(c.islower() for c in password),
        "upper": any(c.isupper() for c in password),
        "digit": any(c.isdigit() for c in password),
        "special": any(not c.isalnum() for c in password),
    }


def _is_common(password: str) -> bool:
    lowered = password.lower()
    common = common_passwords()
    if lowered in common or fold(lowered) in common:
        return True
    # "Azerty2026!!" is "azerty" dressed up: strip decoration at both ends and look again.
    core = re.sub(r"^[\W\d_]+|[\W\d_]+$", "", fold(lowered))
    return len(core) >= 4 and core in common and len(password) - len(core) <= 8


@dataclass(frozen=True)
class PolicyVerdict:
    """The outcome of `check_password`: acceptable, or a list of French problems."""

    problems: tuple[str, ...]

    @property
    def acceptable(self) -> bool:
        return not self.problems


def check_password(
    password: str,
    *,
    first_name: str = "",
    last_name: str = "",
    identifier: str = "",
    numen: str | None = None,
) -> PolicyVerdict:
    """Check `password` against the policy for this person. `numen` (clear text) is given when known."""
    problems: list[str] = []
    if len(password) > MAX_LENGTH:
        return PolicyVerdict((f"Le mot de passe ne doit pas dépasser {MAX_LENGTH} caractères.",))
    classes = _classes(password)
    words = [w for w in re.split(r"[\s\-_.,;:!?]+", password) if len(w) >= 2]
    complex_enough = len(password) >= MIN_LENGTH and all(classes.values())
    passphrase = len(password) >= PASSPHRASE_MIN_LENGTH and len(words) >= PASSPHRASE_MIN_WORDS
    if not (complex_enough or passphrase):
        if len(password) < MIN_LENGTH:
            problems.append(f"Le mot de passe doit compter au moins {MIN_LENGTH} caractères.")
        missing = [
            label
            for key, label in (
                ("upper", "une majuscule"),
                ("lower", "une minuscule"),
                ("digit", "un chiffre"),
                ("special", "un caractère spécial"),
            )
            if not classes[key]
        ]
        if missing:
            problems.append(
                "Il manque " + ", ".join(missing) + " (ou choisissez une phrase de passe d'au moins "
                f"{PASSPHRASE_MIN_LENGTH} caractères et {PASSPHRASE_MIN_WORDS} mots)."
            )
    folded = fold(password)
    personal = []
    for part in re.split(r"[^a-z0-9]+", fold(f"{first_name} {last_name}")):
        if len(part) >= 3:
            personal.append(part)
    local = fold(identifier.split("@", 1)[0]) if identifier else ""
    if local and len(local) >= 3:
        personal.append(local)
    if any(p in folded for p in personal):
        problems.append(
            "Le mot de passe ne doit contenir ni votre nom, ni votre prénom, ni votre identifiant."
        )
    if numen and numen.upper() in password.upper().replace(" ", ""):
        problems.append("Le mot de passe ne doit pas contenir votre NUMEN.")
    if _is_common(password):
        problems.append("Ce mot de passe est trop courant : choisissez-en un autre.")
    return PolicyVerdict(tuple(problems))


def numen_candidates(password: str) -> list[str]:
    """Every 13-character window of `password` shaped like a NUMEN (to test against a NUMEN hash)."""
    compact = password.upper().replace(" ", "")
    return sorted(
        {compact[i : i + 13] for i in range(len(compact) - 12) if NUMEN_RE.match(compact[i : i + 13])}
    )


class Hasher:
    """argon2id hashing and verification of passwords and NUMENs, with configurable costs."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4):
        self._ph = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified against when no account matched, so that a miss costs as much as a hit.
        self._dummy = self._ph.hash("not-a-password-of-anyone")

    @classmethod
    def from_settings(cls) -> Hasher:
        """A hasher with the ARGON2_* costs of the settings."""
        from common.config import get_settings

        s = get_settings()
        return cls(s.argon2_time_cost, s.argon2_memory_kib, s.argon2_parallelism)

    def hash(self, secret: str) -> str:
        """An argon2id hash of `secret` (salted, self-describing)."""
        return self._ph.hash(secret)

    def verify(self, hashed: str | None, secret: str) -> bool:
        """True when `secret` matches `hashed`; a missing or corrupt hash is a mismatch (at full cost)."""
        if not hashed:
            self.burn(secret)
            return False
        try:
            return self._ph.verify(hashed, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def burn(self, secret: str) -> None:
        """Spend one verification's worth of time, so that misses and hits cannot be told apart."""
        try:
            self._ph.verify(self._dummy, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            pass

    def needs_rehash(self, hashed: str) -> bool:
        """True when `hashed` was made with other costs than the current ones."""
        return self._ph.check_needs_rehash(hashed)
