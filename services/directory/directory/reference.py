"""Reference data of the academy: départements and their DSDEN, functions, establishment types.

The five départements and the cities of their DSDEN (direction des services départementaux de l'Éducation
nationale) are real. Their telephone numbers, mail addresses and postal addresses below are **fictitious**
(marked `contact_synthetic`): replace them with the real ones before production. Establishments are
loaded separately (`LoadReference`, or the synthetic generator for demos).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Departement:
    """A département of the academy and the DSDEN that helps its staff."""

    code: str
    name: str
    dsden_name: str
    dsden_city: str
    dsden_phone: str
    dsden_email: str
    dsden_postal_address: str
    contact_synthetic: bool = True

    @property
    def help_contact(self) -> str:
        """Whom to contact for help, in French (the webmail's help page shows it)."""
        return (
            f"{self.dsden_name} — {self.dsden_postal_address} — tél. {self.dsden_phone} — {self.dsden_email}"
            + (" (coordonnées fictives)" if self.contact_synthetic else "")
        )


def _dsden(code: str, name: str, article: str, city: str, postcode: str) -> Departement:
    return Departement(
        code=code,
        name=name,
        dsden_name=f"DSDEN {article}{name}",
        dsden_city=city,
        dsden_phone=f"04 00 00 00 {code}",
        dsden_email=f"assistance-dsden{code}@example.invalid",
        dsden_postal_address=f"1 rue de l'Exemple, {postcode} {city}",
    )


DEPARTEMENTS: dict[str, Departement] = {
    d.code: d
    for d in (
        _dsden("11", "Aude", "de l'", "Carcassonne", "11000"),
        _dsden("30", "Gard", "du ", "Nîmes", "30000"),
        _dsden("34", "Hérault", "de l'", "Montpellier", "34000"),
        _dsden("48", "Lozère", "de la ", "Mende", "48000"),
        _dsden("66", "Pyrénées-Orientales", "des ", "Perpignan", "66000"),
    )
}

#: Help desk of the rectorat, for what is not a département's business. Fictitious contact.
RECTORAT_HELP = "Rectorat de l'académie de Montpellier — assistance informatique (coordonnées à renseigner)"

#: Functions of staff: code → French label.
FUNCTIONS: dict[str, str] = {
    "enseignant": "Enseignant",
    "inspecteur": "Inspecteur",
    "direction": "Personnel de direction",
    "administratif": "Personnel administratif",
    "vie-scolaire": "Vie scolaire",
    "technique": "Personnel technique",
    "sante-social": "Personnel de santé et social",
    "rectorat": "Services du rectorat",
    "dsden": "Services de la DSDEN",
}

#: Types of establishment: code → French label.
ESTABLISHMENT_TYPES: dict[str, str] = {
    "ecole": "École",
    "college": "Collège",
    "lycee": "Lycée",
    "universite": "Université",
    "service": "Service académique",
}


def function_code(raw: str) -> str | None:
    """The function code for a code or label as an HR export spells it ("Personnel de direction",
    "enseignant", "DSDEN"…), or None."""
    from directory.normalize import fold

    key = fold(raw or "").strip()
    if not key:
        return None
    for code, label in FUNCTIONS.items():
        if key in (code, fold(label)):
            return code
    aliases = {
        "enseignante": "enseignant",
        "professeur": "enseignant",
        "professeure": "enseignant",
        "inspectrice": "inspecteur",
        "personnel de direction": "direction",
        "services de la dsden": "dsden",
        "services du rectorat": "rectorat",
        "cpe": "vie-scolaire",
    }
    return aliases.get(key)
