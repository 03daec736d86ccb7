"""A real directory server for integration tests (this service's and the services that call it).

`DirectoryHarness(database)` runs the grpc.aio server in a background thread on a free port of
127.0.0.1, over the given database, with cheap argon2 costs (tests only: production costs come from the
settings), a `RecordingNotifier`, and clocks the test can move forward (`advance(seconds)`) to expire
reset tokens and throttling delays without sleeping. `harness.client` is a `DirectoryClient` on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

from pymongo.database import Database

from common.db import utcnow
from directory.client import DirectoryClient
from directory.notifier import RecordingNotifier
from directory.passwords import Hasher
from directory.server import DirectoryServer
from directory.service import Directory
from directory.throttle import Throttle


class MovableClock:
    """Wall clock and monotonic clock shifted by `offset` seconds, which tests advance."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def now(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class DirectoryHarness:
    """Context manager: a running directory server and a client on it."""

    def __init__(
        self,
        database: Database,
        *,
        admin_token: str = "",
        throttle: dict[str, Any] | None = None,
        notifier: Any = None,
        hasher: Hasher | None = None,
        **directory_options: Any,
    ):
        self.clock = MovableClock()
        self.notifier = notifier if notifier is not None else RecordingNotifier()
        self.directory = Directory(
            database,
            hasher=hasher or Hasher(time_cost=1, memory_kib=1024, parallelism=1),
            throttle=Throttle(clock=self.clock.monotonic, **(throttle or {})),
            notifier=self.notifier,
            clock=self.clock.now,
            **directory_options,
        )
        self.admin_token = admin_token
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="directory-harness", daemon=True)
        self.server: DirectoryServer | None = None
        self.client: DirectoryClient | None = None

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self.clock.advance(seconds)

    def __enter__(self) -> DirectoryHarness:
        self._thread.start()

        async def start() -> DirectoryServer:
            server = DirectoryServer(
                self.directory, "127.0.0.1:0", admin_token=self.admin_token, refresh_seconds=0
            )
            await server.start()
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(30)
        self.address = f"127.0.0.1:{self.server.port}"
        self.client = DirectoryClient(self.address, admin_token=self.admin_token, operator="test-operator")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(grace=1), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


#: A small reference set for tests: one establishment per département, of several types.
TEST_ESTABLISHMENTS = [
    {
        "uai": "0340001S",
        "name": "Rectorat de l'académie",
        "type": "service",
        "commune": "Montpellier",
        "departement": "34",
        "synthetic": True,
    },
    {
        "uai": "0110001S",
        "name": "Collège Jean Moulin",
        "type": "college",
        "commune": "Carcassonne",
        "departement": "11",
        "synthetic": True,
    },
    {
        "uai": "0300001N",
        "name": "Lycée Alphonse Daudet",
        "type": "lycee",
        "commune": "Nîmes",
        "departement": "30",
        "synthetic": True,
    },
    {
        "uai": "0480001R",
        "name": "École primaire Jules Ferry",
        "type": "ecole",
        "commune": "Mende",
        "departement": "48",
        "synthetic": True,
    },
    {
        "uai": "0660001T",
        "name": "Université de Perpignan (site 1)",
        "type": "universite",
        "commune": "Perpignan",
        "departement": "66",
        "synthetic": True,
    },
]

_serial = iter(range(10_000, 99_999))


def make_numen(letter: str = "E") -> str:
    """A fresh synthetic NUMEN (unique within the test process)."""
    return f"11{letter}26{next(_serial):05d}TST"


def make_person(**overrides: Any):
    """A NewAccount with plausible values; override any field."""
    from directory.client import NewAccount

    values = {
        "last_name": "Martin",
        "first_name": "Camille",
        "numen": make_numen(),
        "birth_date": "17/05/1984",
        "establishment_uai": "0340001S",
        "function": "enseignant",
        "recovery_address": "camille.perso@example.org",
    }
    values.update(overrides)
    return NewAccount(**values)
