"""Test helpers shared by the unit and integration tests of the spam service.

`make_message(**overrides)` builds a raw RFC 5322 message (a factory, in the nameko examples' style);
`small_model(seed)` trains, once per process and seed, a model on a small stratified subset of the corpus
`-1` sets with a one-point grid, so that tests run in seconds; `corpus_or_skip()` fetches the corpus, and
skips the calling test only when it is not cached and npm cannot reach its registry.
"""

from __future__ import annotations

import datetime as dt
import functools
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from spam import corpus
from spam.exceptions import CorpusUnavailable
from spam.model import SpamModel
from spam.training import LabelledMessage, TrainingParams, train_model

#: Per group, how many messages of the `-1` sets the small model is trained on.
SMALL_SUBSET = {"spam-1": 200, "easy-ham-1": 300, "hard-ham-1": 100}
SMALL_PARAMS = TrainingParams(struct_weights=(0.15,), c_values=(10.0,), folds=3)


def make_message(
    subject: str = "Réunion de l'équipe pédagogique",
    body: str = "Bonjour à tous,\n\nLa réunion aura lieu jeudi à 14 h en salle B12.\n\nCamille",
    sender: str = "Camille Martin <camille.martin@ac-montpellier.fr>",
    to: str = "dominique.durand@ac-montpellier.fr",
    html: str | None = None,
    extra_headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    """A raw message built with the stdlib; every part can be overridden."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(
        dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    )
    message["Message-ID"] = message_id or make_msgid(domain="ac-montpellier.fr")
    for name, value in (extra_headers or {}).items():
        message[name] = value
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def corpus_or_skip() -> Path:
    """The corpus root; skips the test when it is not cached and cannot be fetched."""
    import pytest

    try:
        return corpus.fetch_corpus()
    except CorpusUnavailable as exc:
        pytest.skip(f"spam corpus unavailable: {exc}")


def small_training_set() -> list[LabelledMessage]:
    """A stratified subset of the `-1` sets (the first files of each group, in name order)."""
    messages = []
    for group, count in SMALL_SUBSET.items():
        for sample in corpus.load_samples((group,))[:count]:
            messages.append(LabelledMessage(sample.read(), sample.label, group=group))
    return messages


@functools.lru_cache(maxsize=4)
def _small_model_bytes(seed: int) -> bytes:
    model, _ = train_model(
        small_training_set(), params=TrainingParams(**{**SMALL_PARAMS.__dict__, "seed": seed})
    )
    return model.to_bytes()


def small_model(seed: int = 42) -> SpamModel:
    """A fresh copy of the small model for `seed` (trained once per process)."""
    corpus_or_skip()
    return SpamModel.from_bytes(_small_model_bytes(seed))
