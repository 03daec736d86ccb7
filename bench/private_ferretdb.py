"""A FerretDB of the benchmark's own: the project's build on a free loopback port, data in a scratch folder.

`private_ferretdb()` starts `var/bin/ferretdb` (built by `scripts/stack.py`, the same binary as the shared
instance; `binary=` another build) with an empty SQLite folder, waits until it answers `ping`, yields
`(url, pid)` and stops it.
The pipeline benchmark runs the platform on it so that the database's work (and CPU time) is the
platform's alone, not that of other test runs sharing the machine's instance.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymongo

from common.config import PROJECT_ROOT
from tests.helpers import free_port

BINARY = PROJECT_ROOT / "var" / "bin" / "ferretdb"


class FerretUnavailable(RuntimeError):
    """No FerretDB binary, or it did not answer."""


@contextmanager
def private_ferretdb(timeout: float = 30.0, binary: Path = BINARY) -> Iterator[tuple[str, int]]:
    if not binary.exists():
        raise FerretUnavailable(f"{binary} is missing (scripts/stack.py infra builds it)")
    with tempfile.TemporaryDirectory(prefix="bench-ferretdb-") as data:
        port = free_port()
        listen, sqlite = f"--listen-addr=127.0.0.1:{port}", f"--sqlite-url=file:{data}/"
        process = subprocess.Popen(
            [str(binary), listen, sqlite, "--log-level=error"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"mongodb://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with pymongo.MongoClient(url, serverSelectionTimeoutMS=500) as client:
                        client.admin.command("ping")
                    break
                except pymongo.errors.PyMongoError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise FerretUnavailable(f"FerretDB on port {port} did not answer") from None
                    time.sleep(0.2)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
