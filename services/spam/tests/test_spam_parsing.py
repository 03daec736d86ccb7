"""Parsing and features: hostile or unusual messages never break the analysis, and its cost is bounded."""

from __future__ import annotations

import base64
import os
import time

from spam.features import (
    _LATIN1_WORD_RE,
    _WORD_RE,
    FeatureParams,
    _char_ratios,
    _words,
    describe,
    message_features,
    structure_tokens,
)
from spam.parsing import COLLECTOR_HEADERS, MAX_RAW_BYTES, MAX_TEXT_CHARS, parse_message
from spam.testing import make_message


def test_plain_french_message():
    parsed = parse_message(make_message())
    assert parsed.subject == "Réunion de l'équipe pédagogique"
    assert parsed.from_address == "camille.martin@ac-montpellier.fr"
    assert "réunion aura lieu jeudi" in parsed.text
    features = message_features(parsed, FeatureParams())
    assert "w:réunion" in features and "s:pédagogique" in features
    assert "from_dom:ac-montpellier.fr" in features


def test_empty_and_headerless_input():
    for raw in (b"", b"\r\n", b"Subject: rien\r\n", b"pas un message du tout"):
        parsed = parse_message(raw)
        message_features(parsed, FeatureParams())
        assert parsed.analysed_chars <= MAX_TEXT_CHARS


def test_message_without_body():
    parsed = parse_message(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: vide\r\n\r\n")
    assert parsed.text == ""
    assert "length:0" in structure_tokens(parsed)


def test_binary_content():
    noise = os.urandom(200_000)
    for raw in (noise, b"Subject: bin\r\nContent-Type: application/octet-stream\r\n\r\n" + noise):
        message_features(parse_message(raw), FeatureParams())


def test_broken_charsets_and_encodings():
    raw = (
        b"From: =?x-unknown-charset?q?Jos=E9?= <jose@example.org>\r\n"
        b"Subject: =?utf-8?b?invalid base64!!?= =?iso-8859-1?q?caf=E9?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=klingon\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"%%%not base64%%%\r\n"
        b'--b\r\nContent-Type: text/html; charset="utf-8"\r\n\r\n'
        b"<p>\xe9t\xe9 \xff\xfe invalid utf-8</p>\r\n"
        b"--b"  # no closing boundary
    )
    parsed = parse_message(raw)
    assert "invalid utf-8" in parsed.text
    assert "café" in parsed.subject
    message_features(parsed, FeatureParams())


def test_ten_megabytes_of_text_are_capped():
    body = ("Ceci est une très longue lettre d'information. " * 220_000)[: 10 * 1024 * 1024]
    raw = make_message(body=body)
    assert len(raw) > 10 * 1024 * 1024
    started = time.perf_counter()
    parsed = parse_message(raw)
    features = message_features(parsed, FeatureParams())
    elapsed = time.perf_counter() - started
    assert parsed.truncated
    assert parsed.analysed_chars <= MAX_TEXT_CHARS
    assert "size:over_limit" in features
    assert elapsed < 5  # generous: in practice a few milliseconds, the cap does the work


def test_huge_base64_attachment_is_not_decoded_beyond_the_cap():
    payload = base64.encodebytes(os.urandom(3 * 1024 * 1024)).decode()
    raw = (
        "From: a@example.org\r\nSubject: pj\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="x"\r\n\r\n'
        "--x\r\nContent-Type: text/plain\r\n\r\nVoir PJ.\r\n"
        '--x\r\nContent-Type: application/pdf; name="facture.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + payload + "\r\n--x--\r\n"
    ).encode()
    parsed = parse_message(raw)
    assert parsed.truncated and len(raw) > MAX_RAW_BYTES
    assert ("application/pdf", "pdf") in parsed.attachments
    assert "att_ext:pdf" in structure_tokens(parsed)


def test_links_ip_literals_and_mismatched_anchors():
    html = (
        '<p>Votre banque : <a href="http://192.0.2.7/login">https://www.banque.fr</a> '
        '<a href="https://exemple.fr/x">ici</a></p>'
    )
    tokens = structure_tokens(parse_message(make_message(html=html)))
    assert "url:ip_literal" in tokens
    assert "url:anchor_mismatch" in tokens
    assert "url_dom:exemple.fr" in tokens


def test_collector_headers_are_not_features():
    raw = make_message(
        extra_headers={
            "X-Spam-Status": "Yes, hits=12.0",
            "X-Keywords": "spam",
            "Delivered-To": "zzzz@spamassassin.taint.org",
        }
    )
    parsed = parse_message(b"From spammer@example.com  Thu Aug 22 13:17:22 2002\n" + raw)
    names = set(parsed.header_names)
    assert not names & COLLECTOR_HEADERS
    assert parsed.subject == "Réunion de l'équipe pédagogique"  # the mbox "From " line is skipped


def test_collector_domains_are_scrubbed():
    parsed = parse_message(make_message(sender="fork@spamassassin.taint.org", body="Write to yyyy@taint.org"))
    assert parsed.from_address == ""
    assert "taint" not in parsed.text and "yyyy" not in parsed.text


def test_labels_are_french():
    assert describe("w:gratuit") == "le mot « gratuit » dans le texte"
    assert describe("url:ip_literal") == "un lien vers une adresse IP"
    assert describe("url_dom:exemple.fr") == "un lien vers exemple.fr"


def test_character_ratios_count_latin_letters_only():
    def reference(text: str) -> tuple[float, float]:
        capitals = sum(1 for ch in text if "A" <= ch <= "Z" or ("\xc0" <= ch <= "\xde" and ch != "\xd7"))
        small = sum(1 for ch in text if "a" <= ch <= "z" or ("\xdf" <= ch <= "\xff" and ch != "\xf7"))
        letters = capitals + small
        return (capitals / letters if letters else 0.0), sum(ord(ch) > 127 for ch in text) / len(text)

    assert _char_ratios("") == (0.0, 0.0)
    for text in (
        "ÉCOLE ×÷ ßÿ Þ À",
        "Ωmega 中文 😀 Straße",
        "1234 !?",
        "RÉUNION DU CONSEIL",
        "\x7f\x80\xff\u0100",
    ):
        assert _char_ratios(text) == reference(text), text


def test_latin1_text_is_cut_into_the_same_words():
    latin1 = "".join(chr(code) for code in range(256))
    for text in (latin1, latin1 * 3, " ".join(latin1), "aé_b2 ×÷ ªº µ¹ 1½ $5 £3 %! ü" * 10):
        assert _LATIN1_WORD_RE.findall(text) == _WORD_RE.findall(text)
    # Beyond Latin-1 (€ included), the Unicode pattern is used.
    assert _words("Prix : 30 € TTC, ΑΘΗΝΑ", 50) == ["prix", "<2d>", "€", "ttc", "αθηνα"]
