"""Login throttling that slows an attacker without letting anyone lock a real user out.

There is no account lockout: a lockout lets anybody who knows an address shut its owner out. Instead:

* **per (account, client address) pair** — after `free_failures` consecutive failures, each further
  attempt from that address on that account must wait an exponentially growing delay (1 s, 2 s, 4 s … up
  to `max_delay`). A success resets the pair. The owner, at another address, is not affected.
* **per client address** — at most `address_max_failures` failures in `address_window` seconds across all
  accounts (password spraying); past that the address waits until old failures leave the window. The
  owner is affected only if the attacker shares their address (a school's NAT): the limit is set high
  and only failures count.
* **per account, all addresses together** (a distributed attack) — past `account_tarpit_threshold`
  failures in `account_window`, every *failed* attempt on the account is answered `tarpit_delay` seconds
  late. Successful logins are never delayed, so the owner does not notice.

While a pair or an address is waiting, the password is not even checked (no oracle, no argon2 cost).
State is in memory, per directory process: with several replicas an attacker gets each replica's budget;
route by client address or move the counters to a shared store when that matters. The clock is injected
so the logic is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Pair:
    failures: int = 0
    last_failure: float = 0.0


class Throttle:
    """Failure counters and the delays they impose; thread-safe."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
        address_window: float = 600.0,
        address_max_failures: int = 200,
        account_window: float = 3600.0,
        account_tarpit_threshold: int = 50,
        tarpit_delay: float = 1.0,
        max_entries: int = 200_000,
    ):
        self._clock = clock
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.address_window = address_window
        self.address_max_failures = address_max_failures
        self.account_window = account_window
        self.account_tarpit_threshold = account_tarpit_threshold
        self.tarpit_delay = tarpit_delay
        self.max_entries = max_entries
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._addresses: dict[str, deque[float]] = {}
        self._accounts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def pair_delay(self, failures: int) -> float:
        """How long a pair with `failures` consecutive failures waits after its last one."""
        if failures < self.free_failures:
            return 0.0
        return min(self.base_delay * 2 ** (failures - self.free_failures), self.max_delay)

    def retry_after(self, account: str, client: str) -> float:
        """Seconds before `client` may try `account` again (0: now)."""
        now = self._clock()
        with self._lock:
            wait = 0.0
            pair = self._pairs.get((account, client))
            if pair is not None:
                wait = max(wait, pair.last_failure + self.pair_delay(pair.failures) - now)
            recent = self._window(self._addresses.get(client), now, self.address_window)
            if recent is not None and len(recent) >= self.address_max_failures:
                wait = max(wait, recent[len(recent) - self.address_max_failures] + self.address_window - now)
            return max(wait, 0.0)

    def record_failure(self, account: str, client: str) -> float:
        """Count a failure; returns the extra response delay (tarpit) to apply to this failed answer."""
        now = self._clock()
        with self._lock:
            if len(self._pairs) > self.max_entries:
                self._prune(now)
            pair = self._pairs.setdefault((account, client), _Pair())
            pair.failures += 1
            pair.last_failure = now
            self._addresses.setdefault(client, deque()).append(now)
            per_account = self._accounts.setdefault(account, deque())
            per_account.append(now)
            self._window(per_account, now, self.account_window)
            self._window(self._addresses[client], now, self.address_window)
            return self.tarpit_delay if len(per_account) > self.account_tarpit_threshold else 0.0

    def record_success(self, account: str, client: str) -> None:
        """A success from `client` on `account` clears that pair's failures (not the address's)."""
        with self._lock:
            self._pairs.pop((account, client), None)

    @staticmethod
    def _window(timestamps: deque[float] | None, now: float, width: float) -> deque[float] | None:
        if timestamps is not None:
            while timestamps and timestamps[0] <= now - width:
                timestamps.popleft()
        return timestamps

    def _prune(self, now: float) -> None:
        horizon = max(self.max_delay, self.address_window, self.account_window)
        for key, pair in list(self._pairs.items()):
            if now - pair.last_failure > horizon:
                del self._pairs[key]
        for table, width in ((self._addresses, self.address_window), (self._accounts, self.account_window)):
            for key, stamps in list(table.items()):
                self._window(stamps, now, width)
                if not stamps:
                    del table[key]
