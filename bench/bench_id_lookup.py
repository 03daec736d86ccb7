"""`find_one` by string `_id` in a large collection: the database's most common lookup, timed.

    .venv/bin/python bench/bench_id_lookup.py [--url mongodb://127.0.0.1:27017/] [--documents 100000]
                                              [--lookups 1000]

Fills a scratch collection with `--documents` small documents under random string ids (the platform's
ids are strings: entry ids, mailbox addresses, blob ids), then looks `--lookups` of them up one by one,
in random order, from one client, and prints p50, p95 and the mean. On FerretDB v1 (SQLite backend) an
upstream build scans the whole table for each lookup; the project's build uses the `_id` index
(FERRETDB_PATCHES in scripts/stack.py, docs/ARCHITECTURE.md). The scratch database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid

import pymongo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="database URL (default: MONGODB_URL)")
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if args.url is None:
        sys.path.insert(0, "services/common")
        from common.config import get_settings

        args.url = get_settings().mongodb_url
    client = pymongo.MongoClient(args.url, serverSelectionTimeoutMS=5000)
    name = f"bench_ids_{uuid.uuid4().hex[:8]}"
    collection = client[name].documents
    try:
        ids = [uuid.uuid4().hex for _ in range(args.documents)]
        started = time.perf_counter()
        for start in range(0, len(ids), args.batch):
            collection.insert_many(
                [
                    {"_id": i, "mailbox": "louis.garcia@ac-montpellier.fr", "folder": "INBOX", "size": 4096}
                    for i in ids[start : start + args.batch]
                ],
                ordered=False,
            )
        print(f"{args.documents:,} documents inserted in {time.perf_counter() - started:.1f}s", flush=True)
        sample = random.Random(42).sample(ids, min(args.lookups, len(ids)))  # noqa: S311 - not a secret
        timings = []
        for i in sample:
            t0 = time.perf_counter()
            found = collection.find_one({"_id": i})
            timings.append(time.perf_counter() - t0)
            assert found is not None and found["_id"] == i
        timings.sort()
        p50 = timings[len(timings) // 2] * 1000
        p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))] * 1000
        print(
            f"find_one by _id, {len(timings):,} lookups in {args.documents:,} documents: "
            f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, mean {statistics.fmean(timings) * 1000:.2f} ms"
        )
    finally:
        client.drop_database(name)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
