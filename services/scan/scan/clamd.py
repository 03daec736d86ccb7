"""The clamd client: one INSTREAM scan per message through pyclamd, turned into a `Verdict`.

Anything short of an explicit answer is an error, never "clean": the service retries it with back-off and
the message is held meanwhile. clamd's own "cannot scan completely" alerts (limits exceeded, encrypted
archives, broken executables — enabled by the project's clamd configuration) come back as FOUND with a
`Heuristics.*` signature and are quarantined like any virus.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass

import pyclamd
from prometheus_client import Gauge

from scan.exceptions import ScannerUnavailable

CHUNK_SIZE = 64 * 1024

CLAMD_UP = Gauge("scan_clamd_up", "1 when the last clamd ping or scan got an answer, 0 otherwise.")


@dataclass(frozen=True)
class Verdict:
    """clamd's answer about one message."""

    infected: bool
    signature: str = ""
    engine: str = ""

    @property
    def label(self) -> str:
        return "infected" if self.infected else "clean"


class _Corked:
    """pyclamd's socket, its small writes held until it reads (or CHUNK_SIZE bytes are waiting).

    pyclamd writes a command, each chunk's length and the chunk, and the terminator in separate
    `send()` calls, which may each send only part of their bytes; here they leave in one `sendall`
    (one write for an ordinary message instead of four).
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._held: list[bytes] = []
        self._size = 0

    def send(self, data: bytes) -> int:
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size >= CHUNK_SIZE:
            self._flush()
        return len(data)

    def recv(self, size: int) -> bytes:
        self._flush()
        return self._sock.recv(size)

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._sock.close()

    def _flush(self) -> None:
        if self._held:
            data, self._held, self._size = b"".join(self._held), [], 0
            self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _Clamd(pyclamd.ClamdNetworkSocket):
    def __init__(self, host: str, port: int, timeout: float | None = None):
        # pyclamd's constructor opens and closes a test connection; every command opens its own anyway,
        # and reports an unreachable clamd itself.
        pyclamd.pyclamd._ClamdGeneric.__init__(self)
        self.host, self.port, self.timeout = host, port, timeout

    def _init_socket(self) -> None:
        super()._init_socket()
        self.clamd_socket = _Corked(self.clamd_socket)


class _LocalClamd(pyclamd.ClamdUnixSocket):
    def __init__(self, path: str, timeout: float | None = None):
        # As `_Clamd`: no test connection (pyclamd's constructor opens and closes one).
        pyclamd.pyclamd._ClamdGeneric.__init__(self)
        self.unix_socket, self.timeout = path, timeout

    def _init_socket(self) -> None:
        super()._init_socket()
        self.clamd_socket = _Corked(self.clamd_socket)


class ClamdScanner:
    """Scans byte strings with clamd over TCP, or over its local socket when `socket_path` is given (a
    connection costs both sides about half as much CPU); thread-safe (one connection per scan, as clamd
    expects)."""

    def __init__(
        self, host: str, port: int, timeout: float, version_ttl: float = 300.0, socket_path: str = ""
    ):
        self.host, self.port, self.timeout = host, port, timeout
        self.socket_path = socket_path
        self._version_ttl = version_ttl
        self._version: tuple[float, str] | None = None

    @classmethod
    def from_settings(cls, settings) -> ClamdScanner:
        """The scanner the settings describe: CLAMD_SOCKET when set, else CLAMD_HOST and CLAMD_PORT."""
        return cls(
            settings.clamd_host,
            settings.clamd_port,
            settings.clamd_timeout,
            socket_path=settings.clamd_socket,
        )

    @property
    def address(self) -> str:
        return self.socket_path or f"{self.host}:{self.port}"

    def _client(self) -> _Clamd | _LocalClamd:
        try:
            if self.socket_path:
                return _LocalClamd(self.socket_path, timeout=self.timeout)
            return _Clamd(self.host, self.port, timeout=self.timeout)
        except (pyclamd.ConnectionError, OSError) as exc:
            raise ScannerUnavailable(f"clamd at {self.address} unreachable: {exc}") from exc

    def engine(self) -> str:
        """clamd's engine and signature version (e.g. "ClamAV 1.4.6/27470/…"), cached for a while."""
        now = time.monotonic()
        if self._version is None or now - self._version[0] > self._version_ttl:
            try:
                self._version = (now, self._client().version().strip())
            except (pyclamd.ConnectionError, OSError) as exc:
                raise ScannerUnavailable(f"clamd VERSION failed: {exc}") from exc
        return self._version[1]

    def ping(self) -> bool:
        """True when clamd answers PING."""
        try:
            up = bool(self._client().ping())
        except (ScannerUnavailable, pyclamd.ConnectionError, OSError):
            up = False
        CLAMD_UP.set(1 if up else 0)
        return up

    def scan(self, data: bytes) -> Verdict:
        """The verdict for `data`; raises ScannerUnavailable when clamd cannot give one."""
        try:
            verdict = self._scan(data)
        except ScannerUnavailable:
            CLAMD_UP.set(0)
            raise
        CLAMD_UP.set(1)
        return verdict

    def _scan(self, data: bytes) -> Verdict:
        engine = self.engine()
        client = self._client()
        try:
            # A file-like object: pyclamd's bytes path sends a stray terminator when the size is a
            # multiple of the chunk size.
            result = client.scan_stream(io.BytesIO(data), chunk_size=CHUNK_SIZE)
        except pyclamd.BufferTooLongError:
            # Larger than clamd's StreamMaxLength: it cannot be scanned completely, so it is not clean.
            return Verdict(True, "Heuristics.Limits.Exceeded.StreamMaxLength", engine)
        except (pyclamd.ConnectionError, OSError) as exc:
            raise ScannerUnavailable(f"clamd scan failed: {exc}") from exc
        if result is None:
            return Verdict(False, "", engine)
        status, detail = result.get("stream", ("ERROR", f"unexpected answer {result!r}"))
        if status == "FOUND":
            return Verdict(True, detail, engine)
        raise ScannerUnavailable(f"clamd answered {status}: {detail}")


def local_socket(settings) -> str:
    """The socket scan should be given as CLAMD_SOCKET by whoever starts it next to its own clamd (`make
    run`, the pipeline benchmark): the local socket of the clamd scripts/stack.py starts
    (`settings.local_clamd_socket`), when scan is told no other and that clamd answers PING there; else
    "" (TCP)."""
    local = settings.local_clamd_socket
    if settings.clamd_socket or settings.clamd_host not in {"127.0.0.1", "localhost"} or not local.exists():
        return ""
    return str(local) if ClamdScanner("", 0, 2, socket_path=str(local)).ping() else ""
