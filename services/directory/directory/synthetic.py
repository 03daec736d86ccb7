"""A generator of a realistic **synthetic** academy, for demos and benchmarks.

Everything it produces is invented and marked so (`synthetic: True` in the database, recovery addresses at
the reserved domain example.org, establishment names built from common patrons). Communes are real towns
of each département. The generator is seeded: the same seed and sizes give the same academy, byte for
byte, so demo data and benchmarks are reproducible. Names are drawn with a skewed distribution from lists
of common French names, compound names, accents and apostrophes included, so homonyms occur naturally
(and a few exact namesakes, same first and last name, are added on purpose).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from directory.normalize import name_part
from directory.validation import uai_check_letter

FIRST_NAMES = """
Camille Marie Jean Pierre Nathalie Isabelle Sylvie Catherine Philippe Christophe Frédéric Stéphane Sébastien
Laurent Céline Sandrine Valérie Véronique Nicolas Julien Aurélie Émilie Hélène Élodie Jérôme Thierry François
Françoise Anne Sophie Julie Caroline Florence Martine Michel Patrick Olivier Éric Vincent David Thomas
Mathieu Guillaume Antoine Benoît Loïc Gaëlle Maëlle Chloé Zoé Léa Inès Noémie Anaïs Agnès Cécile Joël
Raphaël Gaël Noël Jean-Pierre Jean-Luc Jean-François Jean-Marc Marie-Hélène Marie-Christine Anne-Sophie
Pierre-Yves Marie-Claire Jean-Baptiste Anne-Laure Lætitia Yannick Karim Samira Fatima Mohamed Nadia Rachid
Youssef Myriam Josiane Ghislaine Bernadette Thérèse Rémi Grégoire Hervé Régis André Jérémie Mélanie
""".split()

_COMMON_LAST_NAMES = """
Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèbvre Michel Garcia
David Bertrand Roux Vincent Fournier Morel Girard André Lefèvre Mercier Dupont Lambert Bonnet François
Martinez Legrand Garnier Faure Rousseau Blanc Guérin Muller Henry Roussel Nicolas Perrin Morin Mathieu
Clément Gauthier Dumont Lopez Fontaine Chevalier Robin Masson Sánchez Gérard Nguyen Boyer Denis Lemaire
Duval Joly Gautier Roger Roche Roy Noël Meyer Lucas Meunier Jean Pérez Marchand Dufour Blanchard Marie
Barbier Brun Dumas Brunet Schmitt Leroux Colin Fernandez Pierre Renard Arnaud Rolland Caron Aubert Giraud
Leclerc Vidal Bourgeois Renaud Lemoine Picard Gaillard Philippe Leclercq Lacroix Fabre Dupuis Olivier
Rodriguez Da_Silva Hubert Louis Charles Guillot Rivière Le_Gall Le_Goff Le_Roux Guillaume Adam Rey Moulin
Gonzalez Berger Lecomte Ménard Fleury Deschamps Carpentier Julien Benoît Paris Maillard Marchal Aubry
Vasseur Le_Roy Renault Jacquet Collet Prévost Poirier Charpentier Royer Huet Baron Dupuy Pons Paul Laine
Carré Breton Rémy Schneider Perrot Guyot Barre Marty Cousin Besson Hoarau Salaün Bouvier Cordier
""".split()

LAST_NAMES = [
    *(name.replace("_", " ") for name in _COMMON_LAST_NAMES),
    "N'Diaye",
    "D'Almeida",
    "D'Huy",
    "de La Fontaine",
    "Saint-Martin",
    "Dupont-Aignan",
    "Van der Berg",
    "Le Bihan-Sauvé",
    "Ollé",
    "Castañer",
    "Pagès",
    "Cazals",
    "Puech",
    "Maurel",
    "Vergès",
    "Bès",
    "Sabatier",
    "Caussé",
    "Roqueplo",
    "Carrère",
]

COMMUNES: dict[str, list[str]] = {
    "11": "Carcassonne Narbonne Castelnaudary Limoux Lézignan-Corbières Port-la-Nouvelle Quillan Coursan "
    "Trèbes Gruissan Leucate Sigean Bram Espéraza Cuxac-d'Aude".split(),
    "30": "Nîmes Alès Bagnols-sur-Cèze Beaucaire Vauvert Saint-Gilles Villeneuve-lès-Avignon Uzès "
    "Pont-Saint-Esprit Le Vigan Aigues-Mortes Sommières Marguerittes Bellegarde Laudun-l'Ardoise".split(),
    "34": "Montpellier Béziers Sète Agde Lunel Frontignan Castelnau-le-Lez Lattes Mauguio Pézenas Lodève "
    "Clermont-l'Hérault Saint-Jean-de-Védas Palavas-les-Flots Ganges Bédarieux Mèze Juvignac Pérols".split(),
    "48": "Mende Marvejols Saint-Chély-d'Apcher Langogne Florac Villefort La Canourgue Chanac".split(),
    "66": "Perpignan Canet-en-Roussillon Saint-Estève Argelès-sur-Mer Saint-Cyprien Céret Prades "
    "Rivesaltes Elne Thuir Cabestany Font-Romeu-Odeillo-Via Le Barcarès Port-Vendres Ille-sur-Têt".split(),
}

PATRONS = """Jean-Moulin Jules-Ferry Victor-Hugo Marie-Curie Jean-Jaurès Louise-Michel Albert-Camus
Paul-Valéry Frédéric-Bazille Joliot-Curie Simone-Veil Pierre-Mendès-France Georges-Brassens Charles-Trenet
Aristide-Maillol Jean-Macé Condorcet Voltaire Jean-Zay Olympe-de-Gouges Lucie-Aubrac Joachim-du-Bellay
Jacques-Prévert Marcel-Pagnol Pablo-Picasso Clemenceau Gaston-Doumergue Alphonse-Daudet Jean-Vilar
Germaine-Tillion Les-Garrigues Les-Oliviers La-Calandreta Las-Cigalas Le-Castellas""".split()

# Share of each establishment type and of each function, roughly as in an academy.
_TYPE_WEIGHTS = {"ecole": 70, "college": 14, "lycee": 10, "universite": 1, "service": 5}
_DEP_WEIGHTS = {"11": 14, "30": 27, "34": 40, "48": 3, "66": 16}
_FUNCTIONS_BY_TYPE = {
    "ecole": {"enseignant": 90, "direction": 6, "vie-scolaire": 4},
    "college": {
        "enseignant": 70,
        "direction": 4,
        "administratif": 8,
        "vie-scolaire": 10,
        "technique": 6,
        "sante-social": 2,
    },
    "lycee": {
        "enseignant": 70,
        "direction": 4,
        "administratif": 8,
        "vie-scolaire": 8,
        "technique": 8,
        "sante-social": 2,
    },
    "universite": {"enseignant": 60, "administratif": 30, "technique": 10},
    "service": {"administratif": 40, "inspecteur": 15, "rectorat": 25, "dsden": 20},
}
_NUMEN_LETTER = {"ecole": "G", "college": "E", "lycee": "E", "universite": "E", "service": "A"}


@dataclass(frozen=True)
class SyntheticEstablishment:
    uai: str
    name: str
    type: str
    commune: str
    departement: str


@dataclass(frozen=True)
class SyntheticPerson:
    last_name: str
    first_name: str
    numen: str
    birth_date: dt.date
    establishment_uai: str
    function: str
    recovery_address: str


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def establishments(count: int, seed: int = 2026) -> list[SyntheticEstablishment]:
    """`count` establishments spread over the five départements (at least the rectorat and 5 DSDEN)."""
    rng = random.Random(f"establishments-{seed}")  # noqa: S311 - reproducible fake data
    result: list[SyntheticEstablishment] = []
    serial = {code: 0 for code in _DEP_WEIGHTS}

    def uai(dep: str) -> str:
        serial[dep] += 1
        digits = f"0{dep}{serial[dep]:04d}"
        return digits + uai_check_letter(digits)

    result.append(SyntheticEstablishment(uai("34"), "Rectorat de l'académie", "service", "Montpellier", "34"))
    for dep, city in (
        ("11", "Carcassonne"),
        ("30", "Nîmes"),
        ("34", "Montpellier"),
        ("48", "Mende"),
        ("66", "Perpignan"),
    ):
        result.append(SyntheticEstablishment(uai(dep), f"DSDEN {dep}", "service", city, dep))
    universities = [("34", "Montpellier"), ("34", "Montpellier"), ("66", "Perpignan"), ("30", "Nîmes")]
    while len(result) < count:
        dep = _weighted(rng, _DEP_WEIGHTS)
        kind = _weighted(rng, _TYPE_WEIGHTS)
        commune = rng.choice(COMMUNES[dep])
        patron = rng.choice(PATRONS).replace("-", " ")
        if kind == "universite":
            if not universities:
                continue
            dep, commune = universities.pop(0)
            name = f"Université de {commune} (site {len(universities) + 1})"
        elif kind == "service":
            name = f"Circonscription {commune}" if rng.random() < 0.7 else f"CIO {commune}"
        elif kind == "ecole":
            name = f"École {rng.choice(['primaire', 'maternelle', 'élémentaire'])} {patron}"
        else:
            name = f"{'Collège' if kind == 'college' else 'Lycée'} {patron}"
        result.append(SyntheticEstablishment(uai(dep), name, kind, commune, dep))
    return result[:count]


def _skewed(rng: random.Random, items: list[str]) -> str:
    # Earlier names of the lists are more frequent (Zipf-like, as real name distributions are).
    weights = _ZIPF.get(len(items))
    if weights is None:
        weights = _ZIPF[len(items)] = list(itertools.accumulate(1 / (i + 8) for i in range(len(items))))
    return rng.choices(items, cum_weights=weights)[0]


_ZIPF: dict[int, list[float]] = {}


def people(
    count: int, establishments_: list[SyntheticEstablishment], seed: int = 2026
) -> Iterator[SyntheticPerson]:
    """`count` staff members with French names, synthetic NUMENs and dates of birth, one per line of an
    imaginary HR export. The same person never appears twice (distinct NUMENs)."""
    rng = random.Random(f"people-{seed}")  # noqa: S311 - reproducible fake data
    used_numens: set[str] = set()
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    for i in range(count):
        if i % 500 == 7:
            # An exact namesake of an earlier person: homonyms must get distinct addresses.
            last, first = "Martin", "Camille"
        else:
            last, first = _skewed(rng, LAST_NAMES), _skewed(rng, FIRST_NAMES)
        est = rng.choice(establishments_)
        function = _weighted(rng, _FUNCTIONS_BY_TYPE[est.type])
        birth = dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 42))
        while True:
            year = rng.randrange(92, 100) if rng.random() < 0.3 else rng.randrange(0, 26)
            suffix = "".join(rng.choice(letters) for _ in range(3))
            numen = f"11{_NUMEN_LETTER[est.type]}{year:02d}{rng.randrange(100000):05d}{suffix}"
            if numen not in used_numens:
                used_numens.add(numen)
                break
        recovery = f"{name_part(first)}.{name_part(last)}.{i}@example.org"
        yield SyntheticPerson(last, first, numen, birth, est.uai, function, recovery)


def hr_export_csv(people_: list[SyntheticPerson], delimiter: str = ";") -> str:
    """The people as an HR export (header `nom;prenom;numen;date_naissance;etablissement;fonction;
    adresse_secours`), dates as JJ/MM/AAAA, ready to encode in UTF-8 or Windows-1252."""
    lines = [
        delimiter.join(
            ["nom", "prenom", "numen", "date_naissance", "etablissement", "fonction", "adresse_secours"]
        )
    ]
    for p in people_:
        lines.append(
            delimiter.join(
                [
                    p.last_name,
                    p.first_name,
                    p.numen,
                    p.birth_date.strftime("%d/%m/%Y"),
                    p.establishment_uai,
                    p.function,
                    p.recovery_address,
                ]
            )
        )
    return "\r\n".join(lines) + "\r\n"
