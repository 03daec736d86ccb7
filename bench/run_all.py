"""`make bench`: every benchmark of the platform, one after the other, each printing its own figures.

The infrastructure is started by `make bench` (scripts/stack.py run). Each benchmark measures a reference
in the same run where it has one (Postfix delivering to Maildir for the pipeline, raw clamd for the scan
stage, bogofilter and SpamAssassin for the spam model, raw argon2 and raw database lookups for the
directory), so its ratios hold on a loaded machine.
Record the figures in BENCHMARKS.md with the command that produced them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS = [
    ("end to end, SMTP to mailbox, against Postfix", ["bench/bench_pipeline.py"]),
    ("scan stage vs raw clamd", ["bench/bench_scan.py", "--messages", "1000"]),
    ("ingest alone: CPU per accepted message", ["bench/bench_ingest.py"]),
    ("database: find_one by _id", ["bench/bench_id_lookup.py"]),
    ("database: FerretDB CPU per message of the pipeline's commands", ["bench/bench_ferretdb_mix.py"]),
    ("directory", ["bench/bench_directory.py"]),
    ("spam filters", ["bench/bench_spam.py"]),
    ("peak: scan backlog with autoscaled workers", ["bench/bench_peak.py"]),
    ("webmail: one mailbox of 100,000 messages", ["bench/bench_webmail.py"]),
    ("calendar and personal contacts", ["bench/bench_agenda.py"]),
]


def main() -> int:
    failures = 0
    for title, args in BENCHMARKS:
        if not (ROOT / args[0]).exists():
            continue
        print(f"\n=== {title}: python {' '.join(args)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, *args], cwd=ROOT)
        print(f"=== {title}: exit {code} after {time.monotonic() - started:.0f}s", flush=True)
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
