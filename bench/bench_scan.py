"""The scan stage against raw clamd, on the same messages, in one run.

    .venv/bin/python bench/bench_scan.py [--messages 2000] [--workers 10] [--size 4096]

The messages are those of the end-to-end benchmark (bench/smtp_load.py: `--size` bytes of French text).

1. Reference: the messages streamed straight to clamd (INSTREAM via pyclamd), from `--workers` threads.
2. The stage: the same messages stored in a scratch database, one `mail.received` event each, consumed by
   one scan process (nameko, WORKER_COUNT=--workers); timed from the first publish to the last
   `mail.scanned` (published once the verdict is recorded). It includes what raw clamd does not: loading
   each raw message from the blob store, the verdict record, confirmed publication of the next event,
   and the broker round trips.

Prints messages/s for both and their ratio. Needs the infrastructure (`make bench` starts it); the stage
runs in a RabbitMQ virtual host of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from smtp_load import message  # noqa: E402

from common.bus import EventPublisher  # noqa: E402
from common.config import get_settings, reset_settings  # noqa: E402
from common.db import BlobStore, get_client  # noqa: E402
from scan.clamd import ClamdScanner  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.pipeline import EventTap, purge_pipeline_queues, running_stages  # noqa: E402
from tests.vhost import private_vhost  # noqa: E402

console = Console()


def make_messages(count: int, size: int = 4096) -> list[bytes]:
    """`count` distinct messages of `size` bytes, as the end-to-end benchmark sends them."""
    return [message(n, f"prof{n}@ac-montpellier.fr", size) for n in range(count)]


def bench_raw(messages: list[bytes], workers: int) -> float:
    settings = get_settings()
    scanner = ClamdScanner.from_settings(settings)
    scanner.engine()
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        verdicts = list(pool.map(scanner.scan, messages))
    elapsed = time.perf_counter() - started
    assert not any(v.infected for v in verdicts)
    return len(messages) / elapsed


def bench_stage(messages: list[bytes], workers: int) -> float:
    name = f"bench_scan_{uuid.uuid4().hex[:8]}"
    client = get_client()
    db = client[name]
    try:
        store = BlobStore(db)
        ids = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("storing messages", total=len(messages))
            for raw in messages:
                message_id = uuid.uuid4().hex
                store.put(message_id, raw)
                ids.append(message_id)
                progress.advance(task)
        purge_pipeline_queues()
        publisher = EventPublisher(source="bench")
        tap = EventTap("mail.scanned")
        with (
            tempfile.TemporaryDirectory() as tmp,
            running_stages(["scan"], name, Path(tmp), WORKER_COUNT=str(workers)),
        ):
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda mid: publisher.publish(
                            "mail.received",
                            {
                                "message_id": mid,
                                "sender": "camille.martin@ac-montpellier.fr",
                                "recipients": ["prof@ac-montpellier.fr"],
                                "size": 4096,
                                "origin": "mx",
                            },
                        ),
                        ids,
                    )
                )
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("scanning", total=len(ids))

                def done() -> bool:
                    # The broker counts the clean verdicts; counting them in the database would load
                    # the database the stage is using.
                    count = tap.count()
                    progress.update(task, completed=count)
                    return count >= len(ids)

                wait_until(done, timeout=600, interval=0.2, what="every verdict")
            elapsed = time.perf_counter() - started
        publisher.close()
        tap.close()
        return len(ids) / elapsed
    finally:
        client.drop_database(name)
        purge_pipeline_queues()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    messages = make_messages(args.messages, args.size)
    before = bench_raw(messages, args.workers)
    console.print(f"raw clamd INSTREAM ({args.workers} threads): {before:,.0f} messages/s")
    # A virtual host of its own: no other process on the machine consumes the stage's events.
    with private_vhost(get_settings().amqp_url, "bench-scan") as amqp_url:
        os.environ["AMQP_URL"] = amqp_url
        reset_settings()
        stage = bench_stage(messages, args.workers)
    console.print(f"scan stage (1 process, {args.workers} workers): {stage:,.0f} messages/s")
    after = bench_raw(messages, args.workers)
    raw = (before + after) / 2
    console.print(f"raw clamd INSTREAM again: {after:,.0f} messages/s; mean {raw:,.0f}")
    console.print(
        f"[bold]ratio stage / raw clamd: {stage / raw:.2f}[/bold] (load average {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
