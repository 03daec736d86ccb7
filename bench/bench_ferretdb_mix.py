"""FerretDB's CPU time per message under the mail pipeline's database workload, replayed without the pipeline.

    .venv/bin/python bench/bench_ferretdb_mix.py [--binary var/bin/ferretdb] [--messages 3000] [--batch 45]
        [--ingest-batch 10] [--repeat 3]

Starts the given FerretDB binary on a free loopback port with an empty SQLite folder
(bench/private_ferretdb.py), creates the platform's indexes, and replays, batch after batch, what the
stages ask of the database for each message (the commands of `common.db.BlobStore`,
`scan.service.VerdictLog` and `common.mailstore.EntryWriter`, with documents of the same shapes):

- ingest: the 4 KB blobs' files documents, `insert_many` of `--ingest-batch` (group commit);
- scan: one `$in` on `_id` with the pushdown comment for the batch's blobs, its verdicts by `insert_many`;
- spam: the same `$in`;
- delivery: the same `$in`, the batch's mailbox entries by `insert_many` (three secondary indexes), one
  `$inc` upsert of the mailbox's usage, a quota `find_one` every eighth batch.

Prints FerretDB's CPU time (every thread, from /proc/<pid>/task/*/schedstat) per message, overall and
per kind of command, and its peak resident memory. The documents are the same from run to run (fixed
ids, dates and bytes), so two builds get the same commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pymongo
from pymongo import ASCENDING, IndexModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "services" / "common"))

from private_ferretdb import private_ferretdb  # noqa: E402

from common.db import PUSHDOWN, ensure_indexes  # noqa: E402
from common.mailstore import INDEXES as ENTRY_INDEXES  # noqa: E402

MAILBOX = "etudiant.test@academie.example"
START = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
WORDS = (
    "bonjour réunion conseil de classe emploi du temps rappel devoirs notes trimestre élèves parents".split()
)


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid`, in nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size of `pid` (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raw_message(rng: random.Random, n: int, size: int = 4096) -> bytes:
    head = (
        f"From: Expediteur {n} <sender{n % 17}@example.org>\r\nTo: <{MAILBOX}>\r\n"
        f"Subject: {' '.join(rng.choices(WORDS, k=5))}\r\nMessage-ID: <{n}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    body = bytearray()
    while len(head) + len(body) < size:
        body += (" ".join(rng.choices(WORDS, k=12)) + "\r\n").encode()
    return (head + body)[:size]


def message_id(n: int) -> str:
    return hashlib.sha256(f"message {n}".encode()).hexdigest()[:32]


def blob_head(rng: random.Random, n: int, at: dt.datetime) -> dict:
    data = raw_message(rng, n)
    return {
        "_id": message_id(n),
        "length": len(data),
        "chunkSize": 255 * 1024,
        "chunks": 0,
        "uploadDate": at,
        "metadata": {
            "content_type": "message/rfc822",
            "origin": "inbound",
            "sender": f"sender{n % 17}@example.org",
            "recipient_count": 1,
            "received_at": at,
            "trace_id": hashlib.sha256(f"trace {n}".encode()).hexdigest()[:32],
            "client_address": "127.0.0.1",
        },
        "data": data,
    }


def verdict(n: int, at: dt.datetime) -> dict:
    return {"_id": message_id(n), "verdict": "clean", "signature": None, "engine": "clamd", "scanned_at": at}


def entry(rng: random.Random, n: int, at: dt.datetime) -> dict:
    subject = " ".join(rng.choices(WORDS, k=5))
    text = " ".join(rng.choices(WORDS, k=300))
    return {
        "message_id": message_id(n),
        "size": 4096,
        "received_at": at,
        "envelope_from": f"sender{n % 17}@example.org",
        "from": {"name": f"Expediteur {n}", "address": f"sender{n % 17}@example.org"},
        "to": [{"name": "", "address": MAILBOX}],
        "cc": [],
        "subject": subject,
        "date": at - dt.timedelta(seconds=3),
        "message_id_header": f"<{n}@example.org>",
        "snippet": text[:200],
        "attachments": [],
        "search_text": text[:2000],
        "search_from": f"expediteur {n} sender{n % 17}@example.org",
        "search_subject": subject,
        "has_attachments": False,
        "_id": hashlib.sha256(f"{message_id(n)}\0{MAILBOX}\0rcpt".encode()).hexdigest()[:32],
        "mailbox": MAILBOX,
        "folder": "INBOX",
        "flags": {"seen": False, "flagged": False, "answered": False},
    }


class Replay:
    """The pipeline's commands for one batch after another; FerretDB CPU time per kind of command."""

    def __init__(self, db, pid: int, batch: int, ingest_batch: int):
        self.db, self.pid, self.batch, self.ingest_batch = db, pid, batch, ingest_batch
        self.rng = random.Random(7)  # noqa: S311 - reproducible test data
        self.next = 0
        self.batches = 0
        self.cpu: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)

    def timed(self, kind: str, call):
        before = cpu_ns(self.pid)
        result = call()
        self.cpu[kind] += cpu_ns(self.pid) - before
        self.calls[kind] += 1
        return result

    def read_blobs(self, kind: str, ids: list[str]) -> None:
        query = {"_id": {"$in": sorted(ids)}}
        heads = self.timed(kind, lambda: list(self.db["blobs.files"].find(query, comment=PUSHDOWN)))
        assert len(heads) == len(ids), (len(heads), len(ids))

    def one_batch(self) -> int:
        first, count = self.next, self.batch
        self.next += count
        at = START + dt.timedelta(seconds=first // 50)
        numbers = range(first, first + count)
        ids = [message_id(n) for n in numbers]
        files = self.db["blobs.files"]
        for start in range(0, count, self.ingest_batch):
            heads = [blob_head(self.rng, n, at) for n in numbers[start : start + self.ingest_batch]]
            self.timed("ingest insert", lambda heads=heads: files.insert_many(heads, ordered=False))
        self.read_blobs("scan $in", ids)
        verdicts = [verdict(n, at) for n in numbers]
        self.timed("scan insert", lambda: self.db.scan_verdicts.insert_many(verdicts, ordered=False))
        self.read_blobs("spam $in", ids)
        self.read_blobs("delivery $in", ids)
        if self.batches % 8 == 0:
            self.timed(
                "delivery quota",
                lambda: self.db.mailboxes.find_one({"_id": MAILBOX}, {"used_bytes": 1, "quota_bytes": 1}),
            )
        entries = [entry(self.rng, n, at) for n in numbers]
        self.timed("delivery insert", lambda: self.db.mailbox_entries.insert_many(entries, ordered=False))
        self.timed(
            "delivery $inc",
            lambda: self.db.mailboxes.update_one(
                {"_id": MAILBOX}, {"$inc": {"used_bytes": 4096 * count}}, upsert=True
            ),
        )
        self.batches += 1
        return count


def run_once(args) -> tuple[float, float, dict[str, float]]:
    with (
        private_ferretdb(binary=Path(args.binary)) as (url, pid),
        pymongo.MongoClient(url, tz_aware=True) as client,
    ):
        db = client["webmail"]
        ensure_indexes(db, ENTRY_INDEXES)
        ensure_indexes(db, {"scan_verdicts": [IndexModel([("scanned_at", ASCENDING)], name="scanned_at")]})
        replay = Replay(db, pid, args.batch, args.ingest_batch)
        for _ in range(args.warmup // args.batch):
            replay.one_batch()
        replay.cpu.clear()
        replay.calls.clear()
        before, messages = cpu_ns(pid), 0
        while messages < args.messages:
            messages += replay.one_batch()
        total = (cpu_ns(pid) - before) / messages / 1e6
        return total, peak_rss_mb(pid), {kind: ns / messages / 1e6 for kind, ns in replay.cpu.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(ROOT / "var" / "bin" / "ferretdb"))
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=450)
    parser.add_argument(
        "--batch", type=int, default=45, help="messages per stage batch (the pipeline's mean)"
    )
    parser.add_argument("--ingest-batch", type=int, default=10, help="blobs per ingest insert_many")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    totals = []
    for run in range(args.repeat):
        total, rss, kinds = run_once(args)
        totals.append(total)
        detail = ", ".join(f"{kind} {ms:.3f}" for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1]))
        print(
            f"run {run + 1}: FerretDB CPU {total:.3f} ms per message, peak RSS {rss:.0f} MB ({detail})",
            flush=True,
        )
    if args.repeat > 1:
        print(f"median {statistics.median(totals):.3f} ms per message, min {min(totals):.3f}")


if __name__ == "__main__":
    main()
