"""Parsing a message into the fields of a mailbox entry, whatever the message looks like."""

import datetime as dt

import pytest

from common.mailstore import entry_id, summarize

SIMPLE = (
    b"From: =?utf-8?q?C=C3=A9line_Roux?= <Celine.Roux@ac-montpellier.fr>\r\n"
    b"To: a@ac-montpellier.fr, B <b@ac-montpellier.fr>\r\n"
    b"Cc: c@ac-montpellier.fr\r\n"
    b"Subject: =?utf-8?q?R=C3=A9union_p=C3=A9dagogique?=\r\n"
    b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <abc@ac-montpellier.fr>\r\n"
    b"\r\n"
    b"Bonjour   a tous,\r\n\r\nla reunion est deplacee.\r\n"
)


def test_headers_are_decoded_and_addresses_normalised():
    summary = summarize(SIMPLE)
    assert summary.sender.name == "Céline Roux"
    assert summary.sender.address == "celine.roux@ac-montpellier.fr"
    assert [a.address for a in summary.to] == ["a@ac-montpellier.fr", "b@ac-montpellier.fr"]
    assert [a.address for a in summary.cc] == ["c@ac-montpellier.fr"]
    assert summary.subject == "Réunion pédagogique"
    assert summary.date == dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
    assert summary.message_id_header == "<abc@ac-montpellier.fr>"
    assert summary.snippet == "Bonjour a tous, la reunion est deplacee."


def test_html_only_mail_gets_a_text_snippet_without_markup_or_scripts():
    raw = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><script>alert(1)</script><style>p{}</style><p>Bonjour &amp; bienvenue</p></html>"
    )
    assert summarize(raw).snippet == "Bonjour & bienvenue"


def test_attachments_are_listed_with_their_decoded_size():
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\ncorps\r\n"
        b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="bulletin.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    )
    summary = summarize(raw)
    assert [(a.filename, a.content_type, a.size) for a in summary.attachments] == [
        ("bulletin.pdf", "application/pdf", 9)
    ]
    assert summary.to_document()["has_attachments"] is True


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02 not a message",
        b"From: <<<>>>\r\nDate: demain\r\nSubject: \xff\xfe\r\n\r\n\xff",
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nno end',
        b"Content-Type: text/plain; charset=unknown-8\r\n\r\ncorps",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
        + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 500,
        b"Subject: " + b"x" * 200_000 + b"\r\n\r\nbody",
    ],
)
def test_malformed_mail_never_raises(raw):
    summary = summarize(raw)
    assert len(summary.snippet) <= 200


def test_entry_ids_are_stable_and_distinct_per_copy():
    assert entry_id("m", "a@x", "rcpt") == entry_id("m", "a@x", "rcpt")
    assert entry_id("m", "a@x", "rcpt") != entry_id("m", "a@x", "sent")
    assert len(entry_id("m", "a@x", "rcpt")) == 32


@pytest.mark.parametrize(
    "text",
    [
        "Réunion à l'école — « Ça marche » ﬁn ½",
        "RÉUNION PÉDAGOGIQUE, Noël, Ægir, straße, ǅ",
        "e\u0301te\u0301 combin\u0327ing marks already apart",
        "Ελληνικά άέή, Русский й, हिन्दी किताब, עִבְרִית, 한국어, 日本語",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math alphabet, emoji 👩‍🏫, variation selector ︎ and a\u20d7 vector arrow",
        "plain ascii text_with_underscores and   spaces",
        "",
    ],
)
def test_fold_strips_exactly_the_combining_characters(text):
    """fold removes, after NFKD, every character with a combining class, and only those (compared with
    a table of every such code point)."""
    import sys
    import unicodedata

    from common.mailstore import fold

    table = {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp))}
    decomposed = unicodedata.normalize("NFKD", text.lower()).translate(table).replace("_", " ")
    expected = " ".join(
        "".join(c if c.isalnum() or c in "@.+-" or c == "_" else " " for c in decomposed).split()
    )
    assert fold(text) == expected


def test_fold_is_its_definition_for_every_character():
    """`fold` folds character by character, with `_fold_text` (the definition) for what is not safe that
    way: both agree on every code point within a text."""
    import sys

    from common.mailstore import _fold_text, fold

    for cp in range(sys.maxunicode + 1):
        text = f"Éa{chr(cp)}B_"
        assert fold(text) == _fold_text(text), hex(cp)


@pytest.mark.parametrize("length", [0, 10, 199, 200, 201, 1999, 2000, 2250, 2251, 4000])
def test_search_text_and_snippet_read_only_what_they_keep(length):
    """`_fold_head` and `_snippet` read less of a text, and give what reading all of it gives."""
    import random
    import re

    from common.mailstore import SNIPPET_LENGTH, _fold_head, _snippet, fold

    rng = random.Random(length)
    alphabet = [*" \t\r\n\u00a0\u3000.,;_-'’«»aàeÉœΣσ", "\u0301", "ﬁ", "½"]
    for _ in range(50):
        weights = [rng.random() for _ in alphabet]
        text = "".join(rng.choices(alphabet, weights, k=rng.randint(0, 2 * length)))
        assert _fold_head(text, length) == fold(text)[:length]
        assert _snippet(text) == re.sub(r"\s+", " ", text).strip()[:SNIPPET_LENGTH]


def test_headers_read_verbatim_are_what_the_header_registry_makes_of_them():
    import email.policy

    from common.mailstore import _VERBATIM

    values = {
        "Subject": ["Message 12", "  RE: [liste] Conseil\tde classe  ", "a =? b", "=?utf-8?q?x?=", "é", ""],
        "Message-ID": [
            "<bench-1-ab12@exemple.org>",
            "<a.b@c>",
            "<a..b@c>",
            "<a@b> x",
            " <a@b>",
            "<a@[1.2.3.4]>",
        ],
    }
    for name, samples in values.items():
        for value in samples:
            if _VERBATIM[name.lower()].match(value):
                assert str(email.policy.default.header_factory(name, value)).strip() == value.strip()
    assert _VERBATIM["subject"].match("Message 12") and _VERBATIM["message-id"].match("<a.b@c>")
