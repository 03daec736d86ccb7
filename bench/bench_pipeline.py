"""End-to-end throughput, SMTP to mailbox, against Debian's Postfix delivering to Maildir in the same run.

    .venv/bin/python bench/bench_pipeline.py [--messages 1000] [--sessions 20] [--size 4096] [--rounds 3]
                                             [--no-postfix]

1. The platform: every service as a process on a scratch database (tests/platform.py: directory, ingest,
   scan, spam, delivery, notify), every message resolved by the directory, stored, scanned by clamd (over
   its local socket when it answers there, as `make run` configures scan) and classified by the spam
   model before its mailbox entry is written.
2. The reference: a private Postfix (bench/postfix.py: Debian's package, its own configuration and queue
   under STATE_DIR/bench/postfix, a free loopback port) delivering the same address to a Maildir.

Both are started once and then loaded in turn: Postfix, the platform, Postfix, the platform… ending with
Postfix, `--rounds` platform loads in all. Each round's ratio is the platform's rate over the mean of
the Postfix loads just before and after it, so that a change in the machine's speed weighs on both sides
alike; the ratio reported is the median of the rounds' (the speed of these shared machines moves by a
quarter within minutes, which one round alone cannot tell from a change in the code).

Every load is the same (bench/smtp_load.py): `--sessions` concurrent SMTP sessions from the same sender,
each sending its share of `--messages` messages of `--size` bytes to one mailbox, timed from the first
connection to the last delivery (for the platform, the last `mail.delivered`, which follows each stored
entry; for Postfix, the last file in the Maildir). Prints each rate and ratio, and the CPU time each
component of the platform used per message in each round (bench/cpu.py). The platform runs in a
RabbitMQ virtual host of its own and, unless `--shared-db`, on a FerretDB of its own
(bench/private_ferretdb.py: the project's build, empty, on a free port), so that other test runs using
the machine's database do not weigh on it (Postfix has its own queue too).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
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
from scan.clamd import local_socket  # noqa: E402
from tests.pipeline import EventTap  # noqa: E402
from tests.platform import running_platform  # noqa: E402
from tests.vhost import private_vhost  # noqa: E402

console = Console()

#: Seconds left to the platform after it started (its services' first connections and queries) before
#: the first load.
SETTLE_SECONDS = 3.0


def report(name: str, result: LoadResult, size: int, sessions: int) -> None:
    console.print(
        f"{name}: {result.accepted} messages of {size} bytes over {sessions} SMTP sessions, "
        f"accepted in {result.accept_seconds:.1f}s, delivered in {result.total_seconds:.1f}s "
        f"-> [bold]{result.rate:,.1f} messages/s[/bold] end to end"
    )


def load(name: str, port: int, recipient: str, delivered, args) -> LoadResult:
    """One load of `args.messages` messages, timed to the last of them delivered (`delivered()` counts
    from this load's start: whatever earlier loads delivered is subtracted)."""
    before = delivered()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(name, total=args.messages)
        result = run_load(
            port,
            recipient,
            lambda: delivered() - before,
            count=args.messages,
            sessions=args.sessions,
            size=args.size,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    report(name, result, args.size, args.sessions)
    return result


def clamd_settings() -> dict[str, str]:
    """CLAMD_SOCKET as `make run` sets it for scan (`scan.clamd.local_socket`)."""
    socket_path = local_socket(get_settings())
    return {"CLAMD_SOCKET": socket_path} if socket_path else {}


class Platform:
    """The platform, started once (tests/platform.py) and loaded once per round."""

    def __init__(self, platform: dict, database_pid: int | None):
        self.recipient = platform["people"]["Louis"]
        self.port = platform["mx"]
        self.database_pid = database_pid
        # Counted from the broker: every mailbox entry is announced by a `mail.delivered` once stored, and
        # taking a tap's messages (a batch of events each) costs little, where counting the entries would
        # load the database being measured.
        self.tap = EventTap("mail.delivered")

    def delivered(self) -> int:
        return self.tap.count()

    def sampler(self) -> CpuSampler:
        return CpuSampler({self.database_pid: "ferretdb"} if self.database_pid else None)

    def measure(self, args) -> LoadResult:
        cpu = self.sampler().start()
        result = load("platform", self.port, self.recipient, self.delivered, args)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument(
        "--rounds", type=int, default=3, help="platform loads, each between two Postfix loads (default 3)"
    )
    parser.add_argument("--no-postfix", action="store_true", help="measure the platform only")
    parser.add_argument(
        "--shared-db",
        action="store_true",
        help="run the platform on MONGODB_URL instead of a FerretDB of the benchmark's own",
    )
    args = parser.parse_args()
    recipient = f"louis.garcia@{get_settings().mail_domain}"
    with contextlib.ExitStack() as stack:
        postfix = None
        if not args.no_postfix:
            try:
                postfix = stack.enter_context(
                    PrivatePostfix(get_settings().state_path / "bench" / "postfix", [recipient])
                )
            except PostfixUnavailable as exc:
                console.print(f"[yellow]no Postfix reference: {exc}[/yellow]")
        database_pid = None
        if not args.shared_db:
            url, database_pid = stack.enter_context(private_ferretdb())
            os.environ["MONGODB_URL"] = url
        # A virtual host of its own: no other process on the machine consumes the run's events.
        os.environ["AMQP_URL"] = stack.enter_context(private_vhost(get_settings().amqp_url, "bench-pipeline"))
        reset_settings()
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        platform = Platform(
            stack.enter_context(
                running_platform(
                    Path(tmp), [("Garcia", "Louis")], "Rentree-Scolaire-2026!", **clamd_settings()
                )
            ),
            database_pid,
        )
        stack.callback(platform.tap.close)

        def reference() -> LoadResult | None:
            """A Postfix load, with what the idle platform's processes used meanwhile."""
            if postfix is None:
                return None
            idle = platform.sampler().start()
            result = load("Postfix (Maildir)", postfix.port, recipient, postfix.delivered, args)
            used = sum(idle.stop().values())
            console.print(
                f"(the idle platform used {100 * used / result.total_seconds:.1f} % of a core meanwhile)"
            )
            return result

        time.sleep(SETTLE_SECONDS)

        references = [reference()]
        ratios = []
        for number in range(1, args.rounds + 1):
            console.rule(f"round {number} of {args.rounds}")
            ours = platform.measure(args)
            references.append(reference())
            if postfix is not None:
                mean = (references[-2].rate + references[-1].rate) / 2
                ratios.append(ours.rate / mean)
                console.print(
                    f"Postfix, mean of the loads before and after: {mean:,.1f} messages/s; "
                    f"ratio platform / Postfix: {ratios[-1]:.2f} (load average {os.getloadavg()[0]:.1f})"
                )
    if ratios:
        console.print(
            f"[bold]ratio platform / Postfix, median of {len(ratios)} rounds: "
            f"{statistics.median(ratios):.2f}[/bold] (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
