"""Learning from users' reports against the real database: lists, shared model, limits against poisoning."""

from __future__ import annotations

import datetime as dt

import pytest

from spam.classifier import DecidedBy, SpamClassifier, Verdict
from spam.feedback import FeedbackLearner, FeedbackLimits, Label, Outcome
from spam.lists import ListKind, SenderLists
from spam.registry import ModelRegistry
from spam.testing import make_message, small_model

pytestmark = pytest.mark.integration

DOMAIN = "ac-montpellier.fr"
NEWSLETTER = dict(
    subject="Lettre d'information des partenaires",
    sender="Partenaires <lettre@partenaires-educ.fr>",
    body="Découvrez nos nouvelles ressources pour la classe : fiches, vidéos et jeux pédagogiques.",
)


@pytest.fixture
def setup(database, tmp_path):
    """(registry, classifier, learner) on a fresh database with the small model active."""
    registry = ModelRegistry(database, cache_dir=tmp_path / "models")
    registry.ensure_indexes()
    model = small_model()
    registry.publish(model)
    registry.activate(model.version)
    lists = SenderLists(database)
    lists.ensure_indexes()
    classifier = SpamClassifier(registry=registry, lists=lists, poll_seconds=3600)
    learner = FeedbackLearner(database, classifier, limits=FeedbackLimits())
    learner.ensure_indexes()
    return registry, classifier, learner


def _word(n: int) -> str:
    """A distinct word per number (digits would be normalised away by the features)."""
    return "zz" + "".join(chr(ord("a") + int(digit)) for digit in str(n))


def _user(n: int) -> str:
    return f"agent.{n}@{DOMAIN}"


def test_a_report_changes_the_score_of_a_near_identical_message(setup):
    _, classifier, learner = setup
    reported = make_message(**NEWSLETTER)
    near_identical = make_message(**{**NEWSLETTER, "body": NEWSLETTER["body"] + " Bonne lecture."})
    before = classifier.classify(near_identical, recipient=_user(99)).score
    result = learner.record(_user(1), reported, Label.SPAM)
    assert result.outcome is Outcome.COUNTED and result.weight == pytest.approx(1 / 3)
    after = classifier.classify(near_identical, recipient=_user(99)).score
    assert after > before


def test_reports_update_the_reporters_lists_only(setup):
    _, classifier, learner = setup
    raw = make_message(**NEWSLETTER)
    result = learner.record(_user(1), raw, "spam")
    assert result.listed is ListKind.BLOCK
    mine = classifier.classify(raw, recipient=_user(1))
    assert mine.verdict is Verdict.SPAM and mine.decided_by is DecidedBy.BLOCK_LIST
    assert classifier.classify(raw, recipient=_user(2)).decided_by is DecidedBy.MODEL
    learner.record(_user(1), raw, "ham")  # changed their mind
    assert classifier.classify(raw, recipient=_user(1)).decided_by is DecidedBy.ALLOW_LIST
    assert classifier.lists.lookup(_user(1), "lettre@partenaires-educ.fr") is ListKind.ALLOW


def test_domain_entries_and_removal(database):
    lists = SenderLists(database)
    lists.ensure_indexes()
    lists.block(_user(1), "@promo.example")
    assert lists.lookup(_user(1), "x@promo.example") is ListKind.BLOCK
    lists.allow(_user(1), "ami@promo.example")
    assert lists.lookup(_user(1), "ami@promo.example") is ListKind.ALLOW
    assert lists.remove(_user(1), "@promo.example")
    assert lists.lookup(_user(1), "x@promo.example") is None
    assert [entry["sender"] for entry in lists.entries(_user(1))] == ["ami@promo.example"]


def test_the_same_report_twice_trains_once(setup):
    _, _, learner = setup
    raw = make_message(**NEWSLETTER)
    assert learner.record(_user(1), raw, "spam").outcome is Outcome.COUNTED
    assert learner.record(_user(1), raw, "spam").outcome is Outcome.DUPLICATE


def test_agreement_raises_the_weight_and_disagreement_cancels_it(setup):
    _, _, learner = setup
    raw = make_message(**NEWSLETTER)
    weights = [learner.record(_user(n), raw, "spam").weight for n in range(1, 5)]
    assert weights == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    disputed = make_message(subject="Sortie scolaire", body="Le car part à 8 h devant le collège.")
    learner.record(_user(1), disputed, "spam")
    assert learner.record(_user(2), disputed, "ham").outcome is Outcome.DISPUTED


def test_one_account_flooding_reports_cannot_flip_a_ham_verdict(setup):
    _, classifier, learner = setup
    ham = make_message(
        subject="Conseil de classe de 3e B",
        body="Bonjour, le conseil de classe de 3e B aura lieu mardi à 17 h. Merci de saisir vos "
        "appréciations avant lundi. Cordialement, la principale adjointe.",
        sender=f"Principale adjointe <principale.adjointe@{DOMAIN}>",
    )
    before = classifier.classify(ham, recipient=_user(2))
    assert before.verdict is Verdict.HAM
    attacker = _user(666)
    outcomes = []
    for n in range(120):  # distinct variants, so that none is a duplicate
        variant = make_message(
            subject="Conseil de classe de 3e B",
            body=f"Bonjour, le conseil de classe de 3e B aura lieu mardi à 17 h. Variante {_word(n)}.",
            sender=f"Principale adjointe <principale.adjointe@{DOMAIN}>",
        )
        outcomes.append(learner.record(attacker, variant, "spam").outcome)
    assert outcomes.count(Outcome.COUNTED) <= learner.limits.daily_cap
    assert {Outcome.DAILY_CAP, Outcome.BUDGET_SPENT} & set(outcomes)
    assert learner.spent(attacker) <= learner.limits.user_budget + 1e-6
    after = classifier.classify(ham, recipient=_user(2))
    assert after.verdict is Verdict.HAM
    # ...and it stays so once the reports are published to every worker.
    learner.publish()
    assert classifier.classify(ham, recipient=_user(2)).verdict is Verdict.HAM


def test_daily_cap_resets_the_next_day(setup):
    learner = setup[2]
    learner.limits = FeedbackLimits(daily_cap=2, quorum=3, learning_rate=0.5, user_budget=100.0)
    day = dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC)
    outcomes = [
        learner.record(_user(1), make_message(body=f"Offre numéro {_word(n)}"), "spam", now=day).outcome
        for n in range(3)
    ]
    assert outcomes == [Outcome.COUNTED, Outcome.COUNTED, Outcome.DAILY_CAP]
    later = day + dt.timedelta(days=1)
    again = learner.record(_user(1), make_message(body="Offre numéro zzz"), "spam", now=later)
    assert again.outcome is Outcome.COUNTED


def test_one_users_influence_never_exceeds_the_budget(setup):
    learner = setup[2]
    learner.limits = FeedbackLimits(daily_cap=1000, quorum=1, learning_rate=5.0, user_budget=0.1)
    outcomes = [
        learner.record(_user(1), make_message(body=f"Offre {_word(n)}"), "spam").outcome for n in range(4)
    ]
    assert Outcome.BUDGET_SPENT in outcomes
    assert learner.spent(_user(1)) == pytest.approx(0.1, abs=1e-6)
    assert learner.record(_user(2), make_message(body="Offre zzq"), "spam").outcome is Outcome.COUNTED


def test_publish_shares_the_learned_model_with_every_worker(setup, database, tmp_path):
    registry, classifier, learner = setup
    raw = make_message(**NEWSLETTER)
    base_version = classifier.model.version
    for n in range(1, 4):
        learner.record(_user(n), raw, "spam")
    learned_score = classifier.classify(raw, recipient=_user(99)).score
    version = learner.publish()
    assert version and version != base_version
    assert registry.active_version() == version
    assert learner.publish() is None  # nothing pending any more
    other_worker = SpamClassifier(registry=ModelRegistry(database, cache_dir=tmp_path / "w2"))
    assert other_worker.model.version == version
    assert other_worker.classify(raw).score == pytest.approx(learned_score, abs=1e-6)
    assert registry.versions()[0]["parent"] == base_version
    assert registry.rollback() == base_version


def test_consensus_samples_and_stats(setup):
    _, _, learner = setup
    agreed = make_message(**NEWSLETTER)
    lone = make_message(subject="Promo", body="Une offre rien que pour vous")
    for n in range(1, 4):
        learner.record(_user(n), agreed, "spam")
    learner.record(_user(1), lone, "spam")
    samples = learner.consensus_samples()
    assert [(s.label, s.group) for s in samples] == [(1, "feedback")]
    stats = learner.stats()
    assert stats["reports"] == 4 and stats["reporters"] == 3 and stats["by_label"] == {"spam": 4}
