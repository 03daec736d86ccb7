"""Structured logs: one JSON object a line, trace id attached, secrets masked."""

import json
import logging

from common.logs import JsonFormatter, trace_context


def render(message, **extra):
    record = logging.LogRecord("scan.service", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(JsonFormatter("scan").format(record))


def test_a_record_is_one_json_object_with_service_and_level():
    entry = render("scanned")
    assert entry["service"] == "scan"
    assert entry["level"] == "INFO"
    assert entry["message"] == "scanned"
    assert "trace_id" not in entry


def test_the_current_trace_id_is_attached():
    with trace_context("cd" * 16):
        assert render("x")["trace_id"] == "cd" * 16


def test_extra_fields_are_kept_and_secrets_masked():
    entry = render("login", account="camille.martin", numen="12A3456789ABC", password="x")
    assert entry["account"] == "camille.martin"
    assert entry["numen"] == "[redacted]"
    assert entry["password"] == "[redacted]"
