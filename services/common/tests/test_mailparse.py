"""`common.mailparse.message_from_bytes` gives the stdlib's Message, and skips the line-by-line parse of a
single-part body only where that cannot change it."""

from __future__ import annotations

import email
import email.policy

import pytest

from common import mailparse

PLAIN = (
    "From: Dominique Durand <dominique.durand@exemple.org>\r\nTo: louis.garcia@ac-montpellier.fr\r\n"
    "Subject: =?utf-8?q?R=C3=A9union?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n"
    "Compte rendu du conseil pédagogique.\r\n\r\nÀ bientôt,\r\n.\r\nDominique\r\n"
).encode()
MULTIPART = (
    b"From: a@x.fr\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\npreamble\r\n--b1\r\n"
    b"Content-Type: text/plain\r\n\r\nbonjour\r\n--b1\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nJVBERi0=\r\n--b1--\r\nepilogue\r\n'
)
FORWARDED = (
    b"From: a@x.fr\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@y.fr\r\nSubject: inner\r\n\r\ncorps\r\n"
)
CASES = {
    "plain": PLAIN,
    "multipart": MULTIPART,
    "forwarded": FORWARDED,
    "delivery status": b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\nStatus: 5.1.1\r\n",
    "lf only": PLAIN.replace(b"\r\n", b"\n"),
    "lf blank line in the headers": PLAIN.replace(b"\r\nTo:", b"\n\nTo:", 1),
    "cr alone in the headers": PLAIN.replace(b"\r\nTo:", b"\rTo:", 1),
    "a line that is no header": b"From: a@x.fr\r\nnot a header line\r\nSubject: s\r\n\r\nbody\r\n",
    "continuation first": b" folded\r\nFrom: a@x.fr\r\n\r\nbody\r\n",
    "no blank line": b"From: a@x.fr\r\nSubject: s\r\n",
    "leading blank line": b"\r\n\r\nFrom: a@x.fr\r\n\r\nbody\r\n",
    "empty body": b"From: a@x.fr\r\n\r\n",
    "empty": b"",
    "unix from line": b"From a@x.fr Thu Aug 22 16:37:36 2002\r\n" + PLAIN,
    "non-ascii body bytes": b"From: a@x.fr\r\nContent-Type: text/plain; charset=latin-1\r\n\r\nd\xe9j\xe0 \xff\x00\r\n",
    "non-ascii header bytes": b"Subject: \xe9t\xe9\r\nFrom: a@x.fr\r\n\r\nbody\r\n",
    "bad content type": b"Content-Type: multipart\r\n\r\n--x\r\nbody\r\n",
}


def state(message) -> tuple:
    """Everything the feed parser sets on a message, its parts' included."""
    payload = message._payload
    if isinstance(payload, list):
        payload = [state(part) for part in payload]
    return (
        type(message),
        message._headers,
        payload,
        [type(defect) for defect in message.defects],
        message._unixfrom,
        message.preamble,
        message.epilogue,
        message._default_type,
    )


@pytest.mark.parametrize("policy", [email.policy.default, email.policy.compat32], ids=["default", "compat32"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_message_is_the_stdlib_s(name, policy):
    raw = CASES[name]
    assert state(mailparse.message_from_bytes(raw, policy)) == state(
        email.message_from_bytes(raw, policy=policy)
    )


def test_a_plain_body_is_not_fed_to_the_parser(monkeypatch):
    fed = []
    parse = email.message_from_bytes

    def recording(raw, **kwargs):
        fed.append(raw)
        return parse(raw, **kwargs)

    monkeypatch.setattr(mailparse.email, "message_from_bytes", recording)
    message = mailparse.message_from_bytes(PLAIN, email.policy.default)
    assert fed == [PLAIN[: PLAIN.index(b"\r\n\r\n") + 4]]
    assert (
        message.get_content()
        == "Compte rendu du conseil pédagogique.\r\n\r\nÀ bientôt,\r\n.\r\nDominique\r\n"
    )
    fed.clear()
    mailparse.message_from_bytes(MULTIPART, email.policy.default)
    assert fed[-1] == MULTIPART  # parsed whole
