"""The model: reproducible training, artifacts, explanations, bounded updates, classification of odd mail."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from spam.classifier import DecidedBy, SpamClassifier, Verdict
from spam.lists import ListKind
from spam.model import SpamModel
from spam.parsing import MAX_TEXT_CHARS
from spam.testing import SMALL_PARAMS, corpus_or_skip, make_message, small_model, small_training_set
from spam.training import TrainingParams, train_model

SPAMMY = make_message(
    subject="GAGNEZ 1000$ MAINTENANT !!!",
    sender="Promo <offre@promo-gratuite.biz>",
    body="Click here to claim your FREE money now! Limited time offer, order now, 100% free, no risk.",
    html='<p>Click <a href="http://192.0.2.7/claim">http://www.mybank.com</a> FREE money!!!</p>',
)


class FakeLists:
    """Sender lists in memory: {(user, sender): ListKind}."""

    def __init__(self, entries: dict[tuple[str, str], ListKind]):
        self.entries = entries

    def lookup(self, user: str, sender: str) -> ListKind | None:
        return self.entries.get((user, sender))


def test_training_is_reproducible_with_a_seed():
    corpus_or_skip()
    messages = small_training_set()[::3]
    params = TrainingParams(**{**SMALL_PARAMS.__dict__, "seed": 7})
    first, _ = train_model(messages, params=params)
    second, _ = train_model(messages, params=params)
    probe = [message.raw for message in small_training_set()[1::50]]
    assert np.array_equal(first.coef, second.coef)
    assert np.array_equal(first.scores(probe), second.scores(probe))
    assert first.version == second.version.replace(second.version[:16], first.version[:16])


def test_artifact_round_trip_keeps_scores_and_metadata():
    model = small_model()
    copy = SpamModel.from_bytes(model.to_bytes())
    raw = make_message()
    assert copy.score(raw) == model.score(raw)
    assert copy.version == model.version and copy.threshold == model.threshold
    assert copy.metadata["seed"] == 42


def test_artifact_loading_never_unpickles():
    with pytest.raises(ValueError):
        SpamModel.from_bytes(b"not an artifact")


def test_scores_are_probabilities_and_spam_scores_higher():
    model = small_model()
    ham, spam = model.score(make_message()), model.score(SPAMMY)
    assert 0.0 <= ham < spam <= 1.0


def test_update_moves_a_near_identical_message_and_is_bounded():
    model = small_model()
    reported = make_message(
        subject="Offre spéciale partenaires", body="Profitez de notre offre sur les stylos."
    )
    similar = make_message(
        subject="Offre spéciale partenaires", body="Profitez de notre offre sur les stylos !"
    )
    before = model.score(similar)
    change = model.update(model.featurizer.features(reported), 1, step=0.5, max_norm=0.05)
    assert 0 < change <= 0.05 + 1e-9
    assert model.score(similar) > before


def test_explanation_lists_french_labels_towards_the_verdict():
    model = small_model()
    reasons = model.explain(model.featurizer.features(SPAMMY), spam=True, limit=3)
    assert 1 <= len(reasons) <= 3
    assert all(reason.weight > 0 and reason.label for reason in reasons)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"Subject: sans corps\r\n\r\n",
        os.urandom(100_000),
        b"Content-Type: text/plain; charset=does-not-exist\r\n\r\n\xff\xfe\xfd caf\xe9",
    ],
    ids=["empty", "no-body", "binary", "broken-charset"],
)
def test_odd_messages_classify(raw):
    result = SpamClassifier(model=small_model()).classify(raw, recipient="camille.martin@ac-montpellier.fr")
    assert 0.0 <= result.score <= 1.0
    assert result.verdict in (Verdict.HAM, Verdict.SPAM)


def test_ten_megabyte_message_classifies_within_bounds():
    classifier = SpamClassifier(model=small_model())
    raw = make_message(body="Lorem ipsum dolor sit amet, bonne rentrée à tous. " * 210_000)
    started = time.perf_counter()
    result = classifier.classify(raw)
    assert time.perf_counter() - started < 5
    assert result.truncated and result.analysed_chars <= MAX_TEXT_CHARS


def test_recipient_lists_override_the_model():
    lists = FakeLists(
        {
            ("dominique@ac-montpellier.fr", "offre@promo-gratuite.biz"): ListKind.ALLOW,
            ("alex@ac-montpellier.fr", "camille.martin@ac-montpellier.fr"): ListKind.BLOCK,
        }
    )
    classifier = SpamClassifier(model=small_model(), lists=lists, threshold=0.5)
    assert classifier.classify(SPAMMY, recipient="someone@ac-montpellier.fr").verdict is Verdict.SPAM
    allowed = classifier.classify(SPAMMY, recipient="dominique@ac-montpellier.fr")
    assert allowed.verdict is Verdict.HAM and allowed.decided_by is DecidedBy.ALLOW_LIST
    blocked = classifier.classify(make_message(), recipient="alex@ac-montpellier.fr")
    assert blocked.verdict is Verdict.SPAM and blocked.decided_by is DecidedBy.BLOCK_LIST
    assert blocked.reasons[0].label == "l'expéditeur figure dans vos expéditeurs bloqués"
    assert classifier.classify(make_message(), recipient="dominique@ac-montpellier.fr").verdict is Verdict.HAM


def test_event_payload():
    classifier = SpamClassifier(model=small_model())
    payload = classifier.classify(SPAMMY).as_event()
    assert set(payload) == {"score", "verdict", "model_version", "threshold", "decided_by", "reasons"}
    assert payload["model_version"] == classifier.model.version
    assert all({"label", "feature", "weight"} == set(reason) for reason in payload["reasons"])


def test_many_recipients_share_one_analysis():
    lists = FakeLists({("alex@ac-montpellier.fr", "offre@promo-gratuite.biz"): ListKind.ALLOW})
    classifier = SpamClassifier(model=small_model(), lists=lists, threshold=0.5)
    results = classifier.classify_many(SPAMMY, ["alex@ac-montpellier.fr", "sam@ac-montpellier.fr"])
    assert results["alex@ac-montpellier.fr"].verdict is Verdict.HAM
    assert results["sam@ac-montpellier.fr"].verdict is Verdict.SPAM
    assert results["alex@ac-montpellier.fr"].score == results["sam@ac-montpellier.fr"].score


def test_ham_verdicts_can_go_unexplained():
    lists = FakeLists({("alex@ac-montpellier.fr", "offre@promo-gratuite.biz"): ListKind.ALLOW})
    classifier = SpamClassifier(model=small_model(), lists=lists, threshold=0.5)
    recipients = ["alex@ac-montpellier.fr", "sam@ac-montpellier.fr"]
    explained = classifier.classify_many(SPAMMY, recipients)
    assert explained["alex@ac-montpellier.fr"].reasons[0].feature == "list:allow"

    results = classifier.classify_many(SPAMMY, recipients, explain_ham=False)
    assert results["alex@ac-montpellier.fr"].verdict is Verdict.HAM
    assert results["alex@ac-montpellier.fr"].reasons == []
    assert results["sam@ac-montpellier.fr"].reasons == explained["sam@ac-montpellier.fr"].reasons != []
    ham = classifier.classify_many(make_message(), ["sam@ac-montpellier.fr"], explain_ham=False)
    assert ham["sam@ac-montpellier.fr"].verdict is Verdict.HAM
    assert ham["sam@ac-montpellier.fr"].reasons == []


def test_fast_scoring_path_matches_the_sparse_one():
    model = small_model()
    raws = [make_message(), SPAMMY, b"", make_message(body="Événement à l'école — inscriptions ouvertes")]
    features = [model.featurizer.features(raw) for raw in raws]
    sparse = model.calibrate(model.margins(model.featurizer.hash(features)))
    fast = np.array([model.score_features(f) for f in features])
    assert np.allclose(sparse, fast, rtol=0, atol=1e-12)
