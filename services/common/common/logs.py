"""Structured JSON logs carrying a trace id.

Every service calls `setup_logging("scan")` once at start. Each record is then one JSON object per line on
stderr with the time, level, service, logger, message, the current trace id and any `extra={...}` fields.
The trace id travels in every event envelope; `trace_context(trace_id)` sets it for the code handling one
message (it is a ContextVar, so it follows asyncio tasks and, under eventlet, green threads).

Secrets never reach a log: callers must not pass them, and `REDACTED_KEYS` are masked if they do.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import uuid
from collections.abc import Iterator

_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

#: Field names whose values are masked in logs, whatever their origin.
REDACTED_KEYS = frozenset({"password", "numen", "token", "secret", "new_password", "reset_token"})

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def new_trace_id() -> str:
    """A fresh random trace id (32 hex digits)."""
    return uuid.uuid4().hex


def current_trace_id() -> str | None:
    """The trace id of the work in progress, if any."""
    return _trace_id.get()


@contextlib.contextmanager
def trace_context(trace_id: str | None) -> Iterator[str]:
    """Run a block with `trace_id` (a new one when None) attached to every log record."""
    trace_id = trace_id or new_trace_id()
    token = _trace_id.set(trace_id)
    try:
        yield trace_id
    finally:
        _trace_id.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = _trace_id.get()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            entry[key] = "[redacted]" if key.lower() in REDACTED_KEYS else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(service: str, level: str | None = None) -> None:
    """Send every log record of the process to stderr as JSON lines tagged with `service`."""
    import time

    from common.config import get_settings

    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(service)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or get_settings().log_level).upper())
    # Libraries that are chatty at INFO.
    for noisy in ("amqp", "kombu", "pymongo", "aiohttp.access", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
