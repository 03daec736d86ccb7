"""The training corpus: pinned, verified, cached, split by the evaluation protocol."""

from __future__ import annotations

import time

import pytest

from spam import corpus
from spam.exceptions import CorpusUnavailable
from spam.testing import corpus_or_skip


def test_corpus_is_cached_and_complete():
    root = corpus_or_skip()
    started = time.perf_counter()
    assert corpus.fetch_corpus() == root  # second run: nothing fetched
    assert time.perf_counter() - started < 2
    assert corpus.is_cached()
    counts = {group: len(corpus.load_samples((group,), root)) for group in corpus.EXPECTED_COUNTS}
    assert counts == corpus.EXPECTED_COUNTS


def test_protocol_keeps_the_test_sets_apart():
    assert set(corpus.TRAIN_SETS) == {"spam-1", "easy-ham-1", "hard-ham-1"}
    assert set(corpus.TEST_SETS) == {"spam-2", "easy-ham-2"}
    assert not set(corpus.TRAIN_SETS) & set(corpus.TEST_SETS)


def test_labels_and_data_hash_are_stable():
    root = corpus_or_skip()
    samples = corpus.load_samples(("spam-1", "hard-ham-1"), root)[::50]
    assert {s.label for s in samples if s.group == "spam-1"} == {corpus.SPAM}
    assert {s.label for s in samples if s.group == "hard-ham-1"} == {corpus.HAM}
    assert corpus.data_hash(samples) == corpus.data_hash(list(samples))


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path):
    tarball = tmp_path / "impostor.tgz"
    tarball.write_bytes(b"not the corpus")
    with pytest.raises(CorpusUnavailable):
        corpus._check_integrity(tarball)
