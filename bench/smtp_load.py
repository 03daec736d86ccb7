"""The SMTP load the pipeline benchmark drives, the same against the platform and against Postfix.

`run_load(port, recipient, delivered, ...)` opens `sessions` concurrent SMTP sessions to 127.0.0.1:`port`,
each sending its share of `count` messages of `size` bytes to `recipient`, one after the other on the
same connection, then waits until `delivered()` (messages in the recipient's mailbox, counted by the
caller every `poll` seconds) reaches the number accepted. It is timed from the first connection to the
last delivery seen.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

SENDER = "dominique.durand@exemple.org"
LINE = "Compte rendu du conseil pédagogique, points à l'ordre du jour.\r\n".encode()


def message(n: int, recipient: str, size: int) -> bytes:
    """Message `n`: plain French text of `size` bytes in all, with its own Message-ID."""
    head = (
        f"From: Dominique Durand <{SENDER}>\r\nTo: {recipient}\r\n"
        f"Subject: Message {n}\r\nMessage-ID: <bench-{n}-{uuid.uuid4().hex}@exemple.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode()
    return head + (LINE * (size // len(LINE) + 1))[: max(0, size - len(head))]


@dataclass(frozen=True)
class LoadResult:
    accepted: int
    accept_seconds: float  # first connection to the last 250
    total_seconds: float  # first connection to the last delivery

    @property
    def rate(self) -> float:
        """End-to-end messages per second."""
        return self.accepted / self.total_seconds


def _send_share(port: int, recipient: str, numbers: list[int], size: int) -> int:
    """One SMTP session sending its messages; returns how many got 250."""
    accepted = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
        for n in numbers:
            smtp.sendmail(SENDER, [recipient], message(n, recipient, size))
            accepted += 1
    return accepted


def run_load(
    port: int,
    recipient: str,
    delivered: Callable[[], int],
    *,
    count: int,
    sessions: int = 20,
    size: int = 4096,
    timeout: float = 1800,
    poll: float = 0.2,
    progress: Callable[[int, int], None] | None = None,
) -> LoadResult:
    """Send the load to `port` and wait for every accepted message to be delivered."""
    shares = [list(range(i, count, sessions)) for i in range(sessions)]
    started = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        accepted = sum(pool.map(lambda share: _send_share(port, recipient, share, size), shares))
    accept_seconds = time.perf_counter() - started
    deadline = time.monotonic() + timeout
    while True:
        done = delivered()
        if progress:
            progress(done, accepted)
        if done >= accepted:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {accepted} messages delivered after {timeout:.0f}s")
        time.sleep(poll)
    return LoadResult(accepted, accept_seconds, time.perf_counter() - started)
