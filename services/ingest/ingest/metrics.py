"""Prometheus metrics of ingest, served on INGEST_METRICS_PORT with the rest of the process's registry.

The `origin` label is the port a session came in on: `mx` or `submission`. The `code` label is the
reply's basic and enhanced code ("550 5.1.1"), never its text, so the label set stays small.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SESSIONS = Counter("ingest_sessions_total", "SMTP sessions opened.", ["origin"])
SESSIONS_IN_FLIGHT = Gauge("ingest_sessions_in_flight", "SMTP sessions open right now.", ["origin"])
SESSIONS_CUT = Counter(
    "ingest_sessions_cut_total",
    "Sessions closed by the server: deadline, idle timeout, overload, shutdown.",
    ["origin", "reason"],
)
MESSAGES = Counter(
    "ingest_messages_total",
    "Messages at the end of DATA, by outcome (accepted/refused/failed) and reply code.",
    ["origin", "outcome", "code"],
)
RECIPIENTS_REFUSED = Counter(
    "ingest_recipients_refused_total", "RCPT commands refused, by reply code.", ["origin", "code"]
)
RECEIVED_BYTES = Counter("ingest_received_bytes_total", "Bytes of accepted messages, as stored.", ["origin"])
MESSAGE_BYTES = Histogram(
    "ingest_message_bytes",
    "Size of accepted messages, as stored.",
    ["origin"],
    buckets=(1_000, 10_000, 100_000, 1_000_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000),
)
ACCEPT_SECONDS = Histogram(
    "ingest_accept_seconds",
    "Time from the end of DATA to the 250 reply (store + confirmed publish).",
    ["origin"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COMMIT_BATCH = Histogram(
    "ingest_commit_batch_size",
    "Messages stored and announced together by one commit batch (one insert, one group publish).",
    buckets=(1, 2, 5, 10, 20, 50, 100),
)
AUTH_ATTEMPTS = Counter("ingest_auth_total", "Submission AUTH attempts, by outcome.", ["outcome"])


def code_of(status: str) -> str:
    """ "550 5.1.1" from "550 5.1.1 No such user here" (or just "550" without an enhanced code)."""
    parts = status.split(" ", 2)
    if len(parts) >= 2 and parts[1][:1].isdigit() and parts[1].count(".") == 2:
        return f"{parts[0]} {parts[1]}"
    return parts[0]
