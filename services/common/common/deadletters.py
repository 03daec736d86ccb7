"""Operator command for dead-letter queues: list, show, replay, discard.

    python -m common.deadletters list                      every dead-letter queue and its depth
    python -m common.deadletters show QUEUE [--limit N]    the events waiting there, with their failure reason
    python -m common.deadletters replay QUEUE [--limit N]  send them back to their work queue, attempts reset
    python -m common.deadletters discard QUEUE --yes       drop them (after reading them with `show`)

QUEUE is a consumer's work queue (e.g. `scan.mail.received`) or its dead-letter queue
(`scan.mail.received.dead`). Replay publishes each event to the work queue with publisher confirms and
only then removes it from the dead-letter queue, so an interrupted replay loses nothing (at worst an
event is replayed twice, which consumers ignore as a duplicate).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Producer

from common.bus import ATTEMPTS_HEADER, FAILED_AT_HEADER, QUEUE_HEADER, REASON_HEADER
from common.config import get_settings
from common.topology import CONSUMERS


@dataclass(frozen=True)
class DeadLetter:
    """One event waiting in a dead-letter queue."""

    event_id: str
    event_type: str
    reason: str
    attempts: int
    failed_at: str
    body: bytes


def _work_queue(name: str) -> str:
    return name[: -len(".dead")] if name.endswith(".dead") else name


def _connection(url: str | None) -> Connection:
    return Connection(
        url or get_settings().amqp_url, transport_options={"confirm_publish": True}, connect_timeout=5
    )


def depths(url: str | None = None) -> dict[str, int]:
    """{dead-letter queue: number of events waiting} for every registered consumer."""
    result = {}
    with _connection(url) as conn:
        for spec in CONSUMERS:
            channel = conn.channel()
            try:
                _, count, _ = channel.queue_declare(spec.dead_letter_queue_name, passive=True)
            except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
                count = 0
            finally:
                channel.close()
            result[spec.dead_letter_queue_name] = count
    return result


def _describe(message) -> DeadLetter:
    headers: dict[str, Any] = message.headers or {}
    try:
        envelope = json.loads(message.body)
        event_id, event_type = envelope.get("event_id", "?"), envelope.get("type", "?")
    except (ValueError, AttributeError, UnicodeDecodeError):
        event_id, event_type = "?", "(unparseable)"
    return DeadLetter(
        event_id=str(event_id),
        event_type=str(event_type),
        reason=str(headers.get(REASON_HEADER, "")),
        attempts=int(headers.get(ATTEMPTS_HEADER, 0) or 0),
        failed_at=str(headers.get(FAILED_AT_HEADER, "")),
        body=message.body if isinstance(message.body, bytes) else str(message.body).encode(),
    )


def show(queue: str, limit: int = 50, url: str | None = None) -> list[DeadLetter]:
    """Read up to `limit` dead letters without removing them."""
    dead_queue = f"{_work_queue(queue)}.dead"
    letters, held = [], []
    with _connection(url) as conn:
        channel = conn.channel()
        try:
            for _ in range(limit):
                message = channel.basic_get(dead_queue, no_ack=False)
                if message is None:
                    break
                held.append(message)
                letters.append(_describe(message))
        finally:
            for message in held:
                message.channel.basic_reject(message.delivery_tag, requeue=True)
            channel.close()
    return letters


def replay(queue: str, limit: int | None = None, url: str | None = None) -> int:
    """Move dead letters back to their work queue (attempts reset); returns how many were replayed."""
    work = _work_queue(queue)
    dead_queue = f"{work}.dead"
    replayed = 0
    with _connection(url) as conn:
        channel = conn.channel()
        producer = Producer(conn.channel())
        while limit is None or replayed < limit:
            message = channel.basic_get(dead_queue, no_ack=False)
            if message is None:
                break
            headers = {
                k: v
                for k, v in (message.headers or {}).items()
                if k not in {ATTEMPTS_HEADER, REASON_HEADER, QUEUE_HEADER, FAILED_AT_HEADER}
            }
            producer.publish(
                message.body,
                exchange="",
                routing_key=work,
                mandatory=True,
                delivery_mode=2,
                content_type=message.content_type or "application/json",
                content_encoding=message.content_encoding or "utf-8",
                headers={**headers, "x-replayed": True},
                retry=False,
            )
            channel.basic_ack(message.delivery_tag)
            replayed += 1
        channel.close()
    return replayed


def discard(queue: str, url: str | None = None) -> int:
    """Drop every dead letter of `queue`; returns how many."""
    with _connection(url) as conn:
        channel = conn.channel()
        count = channel.queue_purge(f"{_work_queue(queue)}.dead") or 0
        channel.close()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.deadletters", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every dead-letter queue and its depth")
    for name in ("show", "replay"):
        p = sub.add_parser(name)
        p.add_argument("queue")
        p.add_argument("--limit", type=int, default=50 if name == "show" else None)
    p = sub.add_parser("discard")
    p.add_argument("queue")
    p.add_argument("--yes", action="store_true", help="confirm: the events are lost")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, count in depths().items():
            print(f"{count:>8}  {name}")
    elif args.command == "show":
        for letter in show(args.queue, args.limit):
            print(f"{letter.failed_at}  {letter.event_type}  {letter.event_id}  attempts={letter.attempts}")
            print(f"    {letter.reason}")
    elif args.command == "replay":
        print(f"replayed {replay(args.queue, args.limit)} event(s) to {_work_queue(args.queue)}")
    elif args.command == "discard":
        if not args.yes:
            print("discarding loses the events; add --yes to confirm", file=sys.stderr)
            return 2
        print(f"discarded {discard(args.queue)} event(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
