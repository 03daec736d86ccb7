"""End-to-end throughput: SMTP sessions in, mailbox entries out, every message scanned and classified.

    .venv/bin/python bench/bench_pipeline.py [--messages 1000] [--sessions 20] [--size 4096]

Starts the whole platform as processes on a scratch database (tests/platform.py: directory, ingest,
scan, spam, delivery, notify), then `--sessions` concurrent SMTP clients each send their share of
`--messages` messages of `--size` bytes to one colleague's mailbox through the MX port. Timed from the
first connection to the last mailbox entry; prints messages/s, and the per-stage share from the services'
own histograms is left to the dashboards.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from common.config import get_settings  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.platform import running_platform  # noqa: E402

console = Console()
DOMAIN = get_settings().mail_domain


def message(n: int, recipient: str, size: int) -> bytes:
    head = (
        f"From: Dominique Durand <dominique.durand@exemple.org>\r\nTo: {recipient}\r\n"
        f"Subject: Message {n}\r\nMessage-ID: <bench-{n}-{uuid.uuid4().hex}@exemple.org>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = "Compte rendu du conseil pédagogique, points à l'ordre du jour.\r\n".encode()
    return head + (line * (size // len(line) + 1))[: max(0, size - len(head))]


def send_share(port: int, recipient: str, numbers: list[int], size: int) -> int:
    """One SMTP session sending its messages; returns how many got 250."""
    accepted = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
        for n in numbers:
            smtp.sendmail("dominique.durand@exemple.org", [recipient], message(n, recipient, size))
            accepted += 1
    return accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_platform(Path(tmp), [("Garcia", "Louis")], "Rentree-Scolaire-2026!") as platform,
    ):
        recipient = platform["people"]["Louis"]
        db = platform["db"]
        shares = [list(range(i, args.messages, args.sessions)) for i in range(args.sessions)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.sessions) as pool:
            futures = [
                pool.submit(send_share, platform["mx"], recipient, share, args.size) for share in shares
            ]
            accepted = sum(f.result() for f in futures)
        sent = time.perf_counter() - started
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("delivering", total=accepted)

            def delivered() -> bool:
                count = db.mailbox_entries.count_documents({"mailbox": recipient})
                progress.update(task, completed=count)
                return count >= accepted

            wait_until(delivered, timeout=1800, interval=0.5, what="every mailbox entry")
        elapsed = time.perf_counter() - started
    console.print(
        f"{accepted} messages of {args.size} bytes over {args.sessions} SMTP sessions: "
        f"accepted in {sent:.1f}s ({accepted / sent:,.0f}/s), delivered in {elapsed:.1f}s "
        f"-> end to end {accepted / elapsed:,.1f} messages/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
