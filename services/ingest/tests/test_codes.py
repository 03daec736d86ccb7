"""Status lines: one module, enhanced codes everywhere, aiosmtpd's literals rewritten."""

from __future__ import annotations

import re

from ingest import codes
from ingest.metrics import code_of

_LINE = re.compile(r"^[2-5]\d\d [2-5]\.\d{1,3}\.\d{1,3} \S")


def all_status_lines() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(codes).items()
        if name.isupper() and isinstance(value, str) and value[:3].isdigit()
    }


def test_every_status_line_has_an_enhanced_code_matching_its_class():
    for name, line in all_status_lines().items():
        if name == "START_DATA":  # 354 is an intermediate reply; RFC 2034 gives it no enhanced code
            continue
        assert _LINE.match(line), name
        assert line[0] == line[4], f"{name}: basic and enhanced classes differ"


def test_codes_the_brief_asks_for():
    assert code_of(codes.UNKNOWN_RECIPIENT) == "550 5.1.1"
    assert code_of(codes.TOO_MANY_RECIPIENTS) == "452 4.5.3"
    assert code_of(codes.MESSAGE_TOO_BIG) == "552 5.3.4"
    assert code_of(codes.LINE_TOO_LONG) == "500 5.5.2"
    assert code_of(codes.SESSION_DEADLINE) == "421 4.4.2"
    assert code_of(codes.INTERNAL_ERROR) == "451 4.3.0"
    assert code_of(codes.AUTH_REQUIRED) == "530 5.7.0"
    assert code_of(codes.STARTTLS_REQUIRED) == "530 5.7.0"
    assert code_of(codes.AUTH_FAILED) == "535 5.7.8"
    assert code_of(codes.SUSPENDED_RECIPIENT).startswith("4")  # temporary: kinder to senders
    assert code_of(codes.DELETED_RECIPIENT).startswith("5")
    assert code_of(codes.RELAY_DENIED).endswith("5.7.1")


def test_aiosmtpd_literals_are_rewritten_and_ours_pass_through():
    assert codes.rewrite("530 Must issue a STARTTLS command first") == codes.STARTTLS_REQUIRED
    assert codes.rewrite("250 OK") == codes.OK
    assert codes.rewrite(codes.UNKNOWN_RECIPIENT) == codes.UNKNOWN_RECIPIENT
    assert all(_LINE.match(line) for line in codes.AIOSMTPD_REWRITES.values())


def test_only_421_closes_the_connection():
    assert codes.closes_connection(codes.SESSION_DEADLINE)
    assert codes.closes_connection(codes.SHUTTING_DOWN)
    assert not codes.closes_connection(codes.INTERNAL_ERROR)


def test_code_of_without_enhanced_code():
    assert code_of("500 Error: bad syntax") == "500"
