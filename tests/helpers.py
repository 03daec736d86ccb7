"""Small helpers for integration tests: free ports, polling, service processes."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


#: Where `free_port` picks ports: below the kernel's ephemeral range (and above the ports the stack's
#: own infrastructure listens on, such as RabbitMQ's 25672 and FerretDB's 27017).
PORTS_FROM = 30000


def _ephemeral_ports() -> range:
    """The ports the kernel hands to outgoing connections (and to a bind to port 0)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def _ports() -> Iterator[int]:
    """Ports below the ephemeral range, from a random start, each handed out once per process (none when
    the ephemeral range leaves no room)."""
    span = range(PORTS_FROM, _ephemeral_ports().start)
    if len(span) >= 500:
        start = random.randrange(len(span))
        yield from span[start:]
        yield from span[:start]


_PORTS = _ports()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a service a test starts.

    It is outside the ephemeral range: a port from there (what binding to port 0 gives) can be taken as
    the local end of any outgoing connection, the services' own included, between the moment it is
    picked and the moment the service binds it.
    """
    for port in _PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = ""):
    """Poll `predicate` until it returns something truthy; returns it, or fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def healthz(port: int) -> int | None:
    """The HTTP status of http://127.0.0.1:<port>/healthz, or None if nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class ServiceProcess:
    """A service started as a real process for a test, with its output kept for failure reports."""

    def __init__(self, args: list[str], env: dict[str, str], health_port: int, log_path: Path):
        self.args, self.env = args, env
        self.health_port = health_port
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60.0, accept: tuple[int, ...] = (200,)) -> None:
        """Wait until /healthz answers one of `accept` (503 too, for a service started with a dependency down)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.output()}")
            if healthz(self.health_port) in accept:
                return
            time.sleep(0.2)
        raise AssertionError(f"service not healthy after {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        """kill -9 the process group, as a crash would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def restarted(self) -> ServiceProcess:
        """A new process with the same command, environment and log file."""
        return ServiceProcess(self.args, self.env, self.health_port, self.log_path)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
