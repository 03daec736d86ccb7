"""End-to-end throughput, SMTP to mailbox, against Debian's Postfix delivering to Maildir in the same run.

    .venv/bin/python bench/bench_pipeline.py [--messages 1000] [--sessions 20] [--size 4096] [--no-postfix]

1. The platform: every service as a process on a scratch database (tests/platform.py: directory, ingest,
   scan, spam, delivery, notify), every message resolved by the directory, stored, scanned by clamd and
   classified by the spam model before its mailbox entry is written.
2. The reference: a private Postfix (bench/postfix.py: Debian's package, its own configuration and queue
   under STATE_DIR/bench/postfix, a free loopback port) delivering the same address to a Maildir. It
   runs twice, before and after the platform, and the mean of the two is the reference, so that a
   change in the machine's load during the run weighs on both sides alike.

Both receive the same load from the same sender (bench/smtp_load.py): `--sessions` concurrent SMTP
sessions, each sending its share of `--messages` messages of `--size` bytes to one mailbox, timed from
the first connection to the last delivery (for the platform, the last `mail.delivered`, which follows
each stored entry; for Postfix, the last file in the Maildir). Prints each rate and the ratio
platform / Postfix, and the CPU time each component of the platform used per message (bench/cpu.py).
The platform runs in a RabbitMQ virtual host of its own and, unless `--shared-db`, on a FerretDB of its
own (bench/private_ferretdb.py: the project's build, empty, on a free port), so that other test runs
using the machine's database do not weigh on it (Postfix has its own queue too).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpu import CpuSampler  # noqa: E402
from postfix import PostfixUnavailable, PrivatePostfix  # noqa: E402
from private_ferretdb import private_ferretdb  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from smtp_load import LoadResult, run_load  # noqa: E402

from common.config import get_settings, reset_settings  # noqa: E402
from tests.pipeline import EventTap  # noqa: E402
from tests.platform import running_platform  # noqa: E402
from tests.vhost import private_vhost  # noqa: E402

console = Console()


def report(name: str, result: LoadResult, size: int, sessions: int) -> None:
    console.print(
        f"{name}: {result.accepted} messages of {size} bytes over {sessions} SMTP sessions, "
        f"accepted in {result.accept_seconds:.1f}s, delivered in {result.total_seconds:.1f}s "
        f"-> [bold]{result.rate:,.1f} messages/s[/bold] end to end"
    )


def load(name: str, port: int, recipient: str, delivered, args) -> LoadResult:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(name, total=args.messages)
        result = run_load(
            port,
            recipient,
            delivered,
            count=args.messages,
            sessions=args.sessions,
            size=args.size,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    report(name, result, args.size, args.sessions)
    return result


def bench_postfix(recipient: str, args) -> LoadResult:
    with PrivatePostfix(get_settings().state_path / "bench" / "postfix", [recipient]) as postfix:
        return load("Postfix (Maildir)", postfix.port, recipient, postfix.delivered, args)


def bench_platform(args, database_pid: int | None = None) -> LoadResult:
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_platform(Path(tmp), [("Garcia", "Louis")], "Rentree-Scolaire-2026!") as platform,
    ):
        recipient = platform["people"]["Louis"]
        # Counted from the broker: every mailbox entry is announced by a `mail.delivered` once stored, and
        # a queue's depth costs nothing, where counting the entries would load the database being measured.
        tap = EventTap("mail.delivered")
        try:

            def delivered() -> int:
                return tap.queue.queue_declare(passive=True).message_count

            cpu = CpuSampler({database_pid: "ferretdb"} if database_pid else None).start()
            result = load("platform", platform["mx"], recipient, delivered, args)
            used = cpu.stop()
            per_message = ", ".join(
                f"{name} {seconds * 1000 / max(1, result.accepted):.1f}"
                for name, seconds in sorted(used.items(), key=lambda item: -item[1])
            )
            console.print(
                f"CPU per message (ms), first connection to last delivery: {per_message}; "
                f"all {sum(used.values()) * 1000 / max(1, result.accepted):.1f}"
            )
            return result
        finally:
            tap.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--no-postfix", action="store_true", help="measure the platform only")
    parser.add_argument(
        "--shared-db",
        action="store_true",
        help="run the platform on MONGODB_URL instead of a FerretDB of the benchmark's own",
    )
    args = parser.parse_args()
    recipient = f"louis.garcia@{get_settings().mail_domain}"
    references: list[LoadResult] = []
    try:
        if not args.no_postfix:
            references.append(bench_postfix(recipient, args))
    except PostfixUnavailable as exc:
        console.print(f"[yellow]no Postfix reference: {exc}[/yellow]")
    # A virtual host of its own: no other process on the machine consumes the run's events.
    with contextlib.ExitStack() as stack:
        database_pid = None
        if not args.shared_db:
            url, database_pid = stack.enter_context(private_ferretdb())
            os.environ["MONGODB_URL"] = url
        amqp_url = stack.enter_context(private_vhost(get_settings().amqp_url, "bench-pipeline"))
        os.environ["AMQP_URL"] = amqp_url
        reset_settings()
        ours = bench_platform(args, database_pid)
    if references:
        references.append(bench_postfix(recipient, args))
        reference = sum(r.rate for r in references) / len(references)
        console.print(
            f"Postfix, mean of the runs before and after: {reference:,.1f} messages/s; "
            f"[bold]ratio platform / Postfix: {ours.rate / reference:.2f}[/bold] "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
