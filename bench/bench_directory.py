"""Benchmark of the directory with 50,000 accounts: authentications/s, recipient resolutions/s and
address-book search p50/p95, over a real gRPC channel, with reference figures measured in the same run
(raw argon2id verifications/s at the same cost, raw pymongo `find_one` by `_id`/s) so that the results
can be read as ratios on any machine.

    .venv/bin/python bench/bench_directory.py [--accounts 50000] [--threads 8] [--keep | --reuse NAME]

The accounts are loaded in bulk into a scratch database (dropped at the end unless --keep). They share
one argon2id password hash made with the production costs (ARGON2_* settings), so that each
authentication costs exactly what it costs in production; the hash is computed once to keep the load
fast. Nothing here asserts timings: it prints them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from common.db import get_client
from directory import synthetic
from directory.demo import bulk_load_people, establishment_rows
from directory.notifier import RecordingNotifier
from directory.passwords import Hasher
from directory.testing import DirectoryHarness

PASSWORD = "Banc-d'Essai#2026"  # noqa: S105 - the synthetic accounts' password


def rate(label: str, calls: int, threads: int, fn: Callable[[int], object]) -> float:
    """Run fn(i) for i in range(calls) on `threads` threads; returns calls per second."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, range(calls)))
    elapsed = time.perf_counter() - started
    per_second = calls / elapsed
    print(f"  {label:<44} {per_second:>10.1f} /s   ({calls} calls, {threads} threads, {elapsed:.1f} s)")
    return per_second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--establishments", type=int, default=2_600)
    parser.add_argument("--threads", type=int, default=8, help="client threads for resolutions")
    parser.add_argument("--auth-threads", type=int, default=4, help="client threads for authentications")
    parser.add_argument("--auth-calls", type=int, default=100)
    parser.add_argument("--resolve-calls", type=int, default=5_000)
    parser.add_argument("--search-calls", type=int, default=2_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", metavar="NAME", help="measure on a scratch database kept by --keep")
    args = parser.parse_args()

    hasher = Hasher.from_settings()
    name = args.reuse or f"bench_directory_{uuid.uuid4().hex[:8]}"
    client = get_client()
    db = client[name]
    print(
        f"scratch database {name}; argon2id costs {hasher._ph.time_cost=} {hasher._ph.memory_cost=} KiB "
        f"{hasher._ph.parallelism=}".replace("hasher._ph.", "")
    )
    try:
        with DirectoryHarness(
            db, hasher=hasher, notifier=RecordingNotifier(), throttle={"address_max_failures": 10**9}
        ) as h:
            directory = h.directory
            h.client.timeout = 300  # a saturated machine must slow the figures down, not fail them
            ests = synthetic.establishments(args.establishments, seed=2026)
            people = list(synthetic.people(args.accounts, ests, seed=2026))
            if args.reuse:
                password_hash = directory.accounts.find_one({"synthetic": True})["password_hash"]
                loaded = directory.accounts.count_documents({})
                print(f"reusing {loaded} accounts; address book: {len(directory.address_book)} entries")
            else:
                directory.load_establishments(establishment_rows(ests))
                password_hash = hasher.hash(PASSWORD)
                started = time.perf_counter()
                with tqdm(total=len(people), desc="loading accounts", unit="acct", file=sys.stdout) as bar:
                    loaded = bulk_load_people(
                        directory,
                        people,
                        numen_hash=hasher.hash("unknown-numen"),
                        password_hash=password_hash,
                        progress=bar.update,
                    )
                print(
                    f"loaded {loaded} accounts in {time.perf_counter() - started:.1f} s; "
                    f"address book: {len(directory.address_book)} entries"
                )
            addresses = [doc["_id"] for doc in directory.addresses.find({}, {"_id": 1})]
            ids = [doc["_id"] for doc in directory.accounts.find({}, {"_id": 1}).limit(5000)]
            rng = random.Random(1)  # noqa: S311 - reproducible workload
            c = h.client
            threads = args.threads
            print("\nreference (same machine, same run):")
            ph_verify = rate(
                "raw argon2id verify",
                max(20, args.auth_calls // 2),
                args.auth_threads,
                lambda i: hasher.verify(password_hash, PASSWORD),
            )
            raw_find = rate(
                "raw pymongo find_one by _id (accounts)",
                args.resolve_calls,
                threads,
                lambda i: directory.accounts.find_one({"_id": ids[i % len(ids)]}),
            )
            raw_address = rate(
                "raw pymongo find_one by _id (addresses)",
                args.resolve_calls,
                threads,
                lambda i: directory.addresses.find_one({"_id": addresses[(i * 7919) % len(addresses)]}),
            )

            print("\ndirectory over gRPC:")
            lock = threading.Lock()
            results: dict[str, int] = {}

            def auth(i: int) -> None:
                reply = c.authenticate(
                    rng.choice(addresses), PASSWORD, f"10.{i % 250}.{i // 250 % 250}.1", "bench"
                )
                with lock:
                    results[reply.result] = results.get(reply.result, 0) + 1

            auths = rate("Authenticate (correct password)", args.auth_calls, args.auth_threads, auth)
            print(f"    outcomes: {results}")
            unknown = [f"personne{i}.inconnue@ac-montpellier.fr" for i in range(100)]

            def resolve(i: int) -> None:
                c.resolve_recipient(
                    unknown[i % 100] if i % 10 == 0 else addresses[(i * 7919) % len(addresses)]
                )

            resolutions = rate("ResolveRecipient (10 % unknown)", args.resolve_calls, threads, resolve)

            words = sorted({w for p in people for w in (p.last_name.split()[0], p.first_name.split("-")[0])})
            deps = ["", "", "34", "30", "11", "66", "48"]
            functions = ["", "", "", "enseignant", "direction"]
            latencies = []
            for i in range(args.search_calls):
                word = rng.choice(words)
                query = word[: rng.randint(2, min(6, len(word)))]
                if i % 5 == 0:
                    query += " " + rng.choice(words)[:2]
                started = time.perf_counter()
                c.search(query, departement=rng.choice(deps), function=rng.choice(functions), page_size=20)
                latencies.append((time.perf_counter() - started) * 1000)
            latencies.sort()
            p50 = statistics.median(latencies)
            p95 = latencies[int(len(latencies) * 0.95) - 1]
            print(
                f"  {'SearchAddressBook latency (sequential)':<44} p50 {p50:.2f} ms   p95 {p95:.2f} ms   "
                f"({args.search_calls} queries)"
            )

            print("\nsummary:")
            print(f"  accounts loaded:               {loaded}")
            print(f"  authentications/s:             {auths:.1f}  ({auths / ph_verify:.2f} x raw verify/s)")
            ratio = resolutions / raw_address
            print(
                f"  recipient resolutions/s:       {resolutions:.0f}  ({ratio:.2f} x raw address find_one/s)"
            )
            print(f"  (raw find_one/s: accounts {raw_find:.0f}, addresses {raw_address:.0f})")
            print(f"  address-book search p50 / p95: {p50:.2f} ms / {p95:.2f} ms")
    finally:
        if not (args.keep or args.reuse):
            client.drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
