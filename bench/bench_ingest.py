"""ingest alone: CPU time per accepted message, without the rest of the pipeline.

    .venv/bin/python bench/bench_ingest.py [--messages 3000] [--sessions 20] [--size 4096] [--repeat 2]

Starts the directory and ingest as processes (tests/platform.py) on a FerretDB of the benchmark's own
(bench/private_ferretdb.py) and in a RabbitMQ virtual host of its own, then drives the pipeline
benchmark's SMTP load (bench/smtp_load.py: `--sessions` concurrent sessions of `--size`-byte messages)
against the MX, `--repeat` times. No stage consumes `mail.received`: each run is timed to the last 250,
and prints the rate, and the CPU time per accepted message of ingest (user and system apart), of the
database, of the broker and of the load generator itself (bench/cpu.py). ingest is the largest consumer
of the end-to-end benchmark; this isolates it for measuring a change (alternate before and after: the
machine's load moves the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpu import CpuSampler, process_times  # noqa: E402
from private_ferretdb import private_ferretdb  # noqa: E402
from rich.progress import Progress  # noqa: E402
from smtp_load import run_load  # noqa: E402

import tests.platform as platform  # noqa: E402
from common.config import get_settings, reset_settings  # noqa: E402
from tests.vhost import private_vhost  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    platform.PIPELINE = ["ingest"]  # the directory is always started; no stage after ingest
    with contextlib.ExitStack() as stack:
        url, database_pid = stack.enter_context(private_ferretdb())
        os.environ["MONGODB_URL"] = url
        os.environ["AMQP_URL"] = stack.enter_context(private_vhost(get_settings().amqp_url, "bench-ingest"))
        reset_settings()
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        running = stack.enter_context(
            platform.running_platform(folder, [("Garcia", "Louis")], "Rentree-Scolaire-2026!")
        )
        ingest_pid = running["procs"]["ingest"].proc.pid
        for run in range(1, args.repeat + 1):
            cpu = CpuSampler({database_pid: "ferretdb"}).start()
            before, own, started = process_times(ingest_pid), os.times(), time.perf_counter()
            with Progress(transient=True) as progress:
                task = progress.add_task(f"run {run}", total=args.messages)
                result = run_load(
                    running["mx"],
                    running["people"]["Louis"],
                    lambda: 10**9,  # nothing is delivered: timed to the last 250
                    count=args.messages,
                    sessions=args.sessions,
                    size=args.size,
                    progress=lambda done, total, t=task: progress.update(t, completed=done, total=total),
                )
            wall = time.perf_counter() - started
            after, own_after, used = process_times(ingest_pid), os.times(), cpu.stop()
            accepted = max(1, result.accepted)
            used["load generator"] = (own_after.user - own.user) + (own_after.system - own.system)
            per_message = ", ".join(
                f"{name} {seconds * 1000 / accepted:.2f}"
                for name, seconds in sorted(used.items(), key=lambda item: -item[1])
                if seconds
            )
            user, system = ((after[i] - before[i]) * 1000 / accepted for i in (0, 1))
            print(
                f"run {run}: {result.accepted} messages accepted in {wall:.2f}s "
                f"({result.accepted / wall:,.0f}/s); ingest user {user:.2f} + system {system:.2f} ms per "
                f"message; CPU ms per message: {per_message}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
