"""`make bench-spam`: the project's spam model against bogofilter and SpamAssassin, on one split, in one run.

All three filters learn from the same messages (the SpamAssassin corpus `-1` sets: spam-1, easy-ham-1,
hard-ham-1) and are scored on the same later mail (the `-2` sets: spam-2, easy-ham-2):

- the project: `spam.training.train_model` (cross-validated on the `-1` sets only), then every `-2`
  message classified one at a time in this process (one core);
- bogofilter (Debian package): `bogofilter -s` / `-n` on the `-1` files, `bogofilter -T -B` (bulk mode, one
  process) on the `-2` files, the spamicity being the score;
- SpamAssassin (Debian `spamassassin` + `spamc`): `sa-learn --local` on the `-1` sets into a Bayes database
  of our own, then `spamd --local` (no network tests, no rules but those Debian ships, no auto-learning)
  on 127.0.0.1 and `spamc -c` on each `-2` message, the score being SpamAssassin's total score.

Reported for each: AUC, spam recall at 0, 0.1 % and 0.5 % ham false positives, messages per second (per
core: throughput divided by the parallel clients used). Everything lives under STATE_DIR/bench/spam; the
spamd started here is stopped at the end. Results go to the terminal (rich table), to
STATE_DIR/bench/spam/results.json and, as a Markdown table for BENCHMARKS.md, to results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common.config import get_settings
from spam import corpus
from spam.metrics import evaluate
from spam.train import rich_progress
from spam.training import LabelledMessage, TrainingParams, train_model
from tests.helpers import free_port

console = Console(stderr=True)


def bench_dir() -> Path:
    """Working folder of the benchmark (wiped at each run)."""
    return get_settings().state_path / "bench" / "spam"


# --- the project's model -----------------------------------------------------------------------------
def run_project(train: list[corpus.Sample], test: list[corpus.Sample]) -> dict:
    """Train the project's model on `train`, classify `test` one message at a time."""
    from rich.progress import Progress

    messages = [LabelledMessage(s.read(), s.label, group=s.group) for s in train]
    started = time.perf_counter()
    with Progress(console=console) as progress:
        model, report = train_model(messages, params=TrainingParams(), progress=rich_progress(progress))
    train_seconds = time.perf_counter() - started
    raws = [s.read() for s in test]
    model.score(raws[0])  # warm-up
    scores = np.empty(len(raws))
    started, cpu_started = time.perf_counter(), time.process_time()
    for index, raw in enumerate(raws):
        scores[index] = model.score(raw)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "scores": scores,
        "messages_per_second": len(raws) / elapsed,
        "messages_per_cpu_second": len(raws) / cpu,
        "train_seconds": train_seconds,
        "details": {"chosen": report.chosen, "cv_metrics": report.cv_metrics, "version": model.version},
    }


# --- bogofilter --------------------------------------------------------------------------------------
def run_bogofilter(train: list[corpus.Sample], test: list[corpus.Sample], home: Path) -> dict:
    """Train bogofilter on `train` (register spam/ham), score `test` in bulk mode."""
    home.mkdir(parents=True)
    env = {**os.environ, "BOGOFILTER_DIR": str(home), "HOME": str(home)}
    started = time.perf_counter()
    for flag, label in (("-s", corpus.SPAM), ("-n", corpus.HAM)):
        files = [str(s.path) for s in train if s.label == label]
        for chunk in range(0, len(files), 500):
            subprocess.run(
                ["bogofilter", "-d", str(home), flag, "-B", *files[chunk : chunk + 500]], env=env, check=True
            )
    train_seconds = time.perf_counter() - started
    scores = {}
    started, cpu_started = time.perf_counter(), _children_cpu()
    for chunk in range(0, len(test), 500):
        files = [str(s.path) for s in test[chunk : chunk + 500]]
        result = subprocess.run(
            ["bogofilter", "-d", str(home), "-T", "-B", *files], env=env, capture_output=True, text=True
        )
        if result.returncode not in (0, 1, 2):  # 0 spam, 1 ham, 2 unsure
            raise RuntimeError(f"bogofilter failed: {result.stderr[-500:]}")
        for line in result.stdout.splitlines():
            # "<file> <S|H|U> <spamicity>"
            name, _, score = line.rsplit(" ", 2)
            scores[name] = float(score)
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu_started
    return {
        "scores": np.array([scores[str(s.path)] for s in test]),
        "messages_per_second": len(test) / elapsed,
        "messages_per_cpu_second": len(test) / cpu,
        "train_seconds": train_seconds,
        "details": {
            "version": subprocess.run(["bogofilter", "-V"], capture_output=True, text=True).stdout[:40]
        },
    }


# --- SpamAssassin ------------------------------------------------------------------------------------
SA_LOCAL_CF = """\
# Written by bench/bench_spam.py: Bayes and local tests only.
use_bayes 1
bayes_auto_learn 0
bayes_path {bayes}/bayes
lock_method flock
skip_rbl_checks 1
dns_available no
use_auto_whitelist 0
ifplugin Mail::SpamAssassin::Plugin::Razor2
  use_razor2 0
endif
ifplugin Mail::SpamAssassin::Plugin::Pyzor
  use_pyzor 0
endif
ifplugin Mail::SpamAssassin::Plugin::DCC
  use_dcc 0
endif
"""


def _children_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's reaped child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"spamd exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("spamd did not start listening")


def run_spamassassin(train: list[corpus.Sample], test: list[corpus.Sample], home: Path, clients: int) -> dict:
    """Train SpamAssassin's Bayes on `train` with sa-learn, score `test` through spamd/spamc."""
    site = home / "etc"
    bayes = home / "bayes"
    site.mkdir(parents=True)
    bayes.mkdir()
    for source in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(source, site / source.name)
    (site / "local.cf").write_text(SA_LOCAL_CF.format(bayes=bayes))
    env = {**os.environ, "HOME": str(home)}
    common = ["--local", f"--siteconfigpath={site}", f"--dbpath={bayes}"]
    started = time.perf_counter()
    for flag, label in (("--spam", corpus.SPAM), ("--ham", corpus.HAM)):
        files = [str(s.path) for s in train if s.label == label]
        subprocess.run(
            ["sa-learn", *common, "--no-sync", flag, *files], env=env, check=True, capture_output=True
        )
    subprocess.run(["sa-learn", *common, "--sync"], env=env, check=True, capture_output=True)
    train_seconds = time.perf_counter() - started
    learned = subprocess.run(
        ["sa-learn", *common, "--dump", "magic"], env=env, capture_output=True, text=True
    )
    # spamd started as root scans as "nobody": let it read (not write) the Bayes database.
    for path in (home, bayes, *bayes.iterdir()):
        path.chmod((path.stat().st_mode | 0o555) if path.is_dir() else 0o644)

    port = free_port()
    cpu_started = _children_cpu()
    log = (home / "spamd.log").open("w")
    spamd = subprocess.Popen(
        [
            "spamd",
            "--local",
            "--nouser-config",
            f"--siteconfigpath={site}",
            f"--helper-home-dir={home}",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--allowed-ips=127.0.0.1",
            f"--max-children={clients}",
            f"--min-children={clients}",
            f"--pidfile={home / 'spamd.pid'}",
            "--syslog=stderr",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, spamd)

        def score(sample: corpus.Sample) -> float:
            result = subprocess.run(
                ["spamc", "-d", "127.0.0.1", "-p", str(port), "-c", "-x", "-t", "120", "-s", "5000000"],
                input=sample.read(),
                capture_output=True,
            )
            text = result.stdout.decode().strip()  # "score/threshold"
            if "/" not in text:
                raise RuntimeError(f"spamc failed on {sample.path.name}: {result.stderr[-300:]!r}")
            return float(text.split("/")[0])

        score(test[0])  # warm-up: the first scan compiles rules
        started = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=clients)
        try:
            scores = np.array(list(pool.map(score, test)))
        finally:
            pool.shutdown(cancel_futures=True)
        elapsed = time.perf_counter() - started
    finally:
        # Stop only the spamd this benchmark started (its own process group).
        os.killpg(spamd.pid, signal.SIGTERM)
        try:
            spamd.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(spamd.pid, signal.SIGKILL)
            spamd.wait()
        log.close()
    # spamd and its children, reaped: their CPU time (start-up included) and that of every spamc.
    cpu = _children_cpu() - cpu_started
    return {
        "scores": scores,
        "messages_per_second": len(test) / elapsed / clients,
        "messages_per_cpu_second": len(test) / cpu,
        "train_seconds": train_seconds,
        "details": {"clients": clients, "bayes": learned.stdout.strip().splitlines()[:6]},
    }


# --- report ------------------------------------------------------------------------------------------
COLUMNS = (
    ("AUC", "auc", "{:.4f}"),
    ("recall @ 0 FP", "recall_at_fpr_0pct", "{:.3f}"),
    ("recall @ 0.1% FP", "recall_at_fpr_0_1pct", "{:.3f}"),
    ("recall @ 0.5% FP", "recall_at_fpr_0_5pct", "{:.3f}"),
    ("msg/s per core (wall)", "messages_per_second", "{:,.0f}"),
    ("msg per CPU-second", "messages_per_cpu_second", "{:,.0f}"),
    ("training (s)", "train_seconds", "{:.0f}"),
)


def markdown(results: dict[str, dict]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| filter | " + " | ".join(name for name, _, _ in COLUMNS) + " |",
        "| --- |" + " ---: |" * len(COLUMNS),
    ]
    for name, result in results.items():
        cells = [fmt.format(result[key]) for _, key, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that `finally` blocks stop the spamd this benchmark started


def main(argv: list[str] | None = None) -> int:
    """Entry point of `make bench-spam`."""
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip", action="append", default=[], choices=["project", "bogofilter", "spamassassin"]
    )
    parser.add_argument("--clients", type=int, default=os.cpu_count() or 1, help="parallel spamc clients")
    args = parser.parse_args(argv)

    corpus.fetch_corpus()
    train = corpus.load_samples(corpus.TRAIN_SETS)
    test = corpus.load_samples(corpus.TEST_SETS)
    labels = np.array([s.label for s in test])
    console.print(
        f"train (-1): {sum(s.label for s in train)} spam, {sum(1 - s.label for s in train)} ham — "
        f"test (-2): {int(labels.sum())} spam, {int((1 - labels).sum())} ham"
    )
    work = bench_dir()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    runs = {
        "project": lambda: run_project(train, test),
        "bogofilter": lambda: run_bogofilter(train, test, work / "bogofilter"),
        "SpamAssassin": lambda: run_spamassassin(train, test, work / "spamassassin", args.clients),
    }
    keys = dict(zip(runs, ("project", "bogofilter", "spamassassin"), strict=True))
    results: dict[str, dict] = {}
    for name, run in runs.items():
        if keys[name] in args.skip:
            continue
        console.rule(name)
        outcome = run()
        metrics = evaluate(labels, outcome["scores"])
        results[name] = {
            **metrics,
            "messages_per_second": outcome["messages_per_second"],
            "messages_per_cpu_second": outcome["messages_per_cpu_second"],
            "train_seconds": outcome["train_seconds"],
            "details": outcome["details"],
        }

    table = Table(title="Spam filters — trained on the -1 sets, scored on the -2 sets")
    table.add_column("filter")
    for column, _, _ in COLUMNS:
        table.add_column(column, justify="right")
    for name, result in results.items():
        table.add_row(name, *[fmt.format(result[key]) for _, key, fmt in COLUMNS])
    Console(width=140).print(table)
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (work / "results.md").write_text(markdown(results) + "\n")
    sys.stdout.write(markdown(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
