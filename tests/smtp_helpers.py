"""Helpers for SMTP tests: ingest's real servers in a background thread, raw-socket clients, and a
reader for the `mail.received` events ingest publishes.

`IngestThread` is ingest's answer to aiosmtpd's `Controller`: the service's own `start()`/`stop()` on an
event loop of its own, in a thread, on free ports, with whatever directory, blob store and publisher the
test passes in.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kombu import Connection

from common.config import get_settings
from common.topology import ConsumerSpec, declare, register_consumer
from ingest.server import IngestLimits
from ingest.service import IngestService
from ingest.tls import ensure_self_signed, server_context
from tests.helpers import free_port
from tests.pipeline import QueueEvents

DOMAIN = get_settings().mail_domain

#: A consumer of mail.received of the tests' own, so no other process takes the events they read.
EVENTS = ConsumerSpec("ingesttest", "mail.received")
register_consumer(EVENTS)


class IngestThread:
    """ingest's two servers running on a private event loop in a daemon thread."""

    def __init__(self, service: IngestService):
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ingest-test", daemon=True)

    def start(self) -> IngestThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(10)
        return self

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self.service.stop(grace), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def mx_port(self) -> int:
        return self.service.mx_port

    @property
    def submission_port(self) -> int:
        return self.service.submission_port


def tls_context(folder: Path) -> ssl.SSLContext:
    """A server context with a throw-away self-signed certificate in `folder`."""
    cert, key = folder / "ingest.crt", folder / "ingest.key"
    ensure_self_signed(cert, key, "localhost")
    return server_context(cert, key)


def client_tls_context() -> ssl.SSLContext:
    """A client context that accepts the self-signed test certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def running_ingest(
    *,
    directory,
    blobs,
    publisher,
    tls_folder: Path,
    limits: IngestLimits | None = None,
    service_identity=None,
) -> Iterator[IngestThread]:
    """Start ingest on free ports for the duration of a `with` block (with `service_identity`, the
    webmail's proxy login is accepted on the submission port)."""
    service = IngestService(
        mail_domain=DOMAIN,
        directory=directory,
        blobs=_Recording(blobs),
        publisher=publisher,
        tls_context=tls_context(tls_folder),
        limits=limits or DEFAULT_LIMITS,
        host="127.0.0.1",
        mx_port=free_port(),
        submission_port=free_port(),
        server_name="mx.test.invalid",
        service_identity=service_identity,
    )
    thread = IngestThread(service).start()
    try:
        yield thread
    finally:
        thread.stop()


#: Every message id ingest tried to store during this test run. The broker is shared with other
#: developers' tests, which publish mail.received too: EventReader only reports events about these ids.
ISSUED_IDS: set[str] = set()


class _Recording:
    """Wraps a blob store to note the ids ingest stores under, and delegates everything else."""

    def __init__(self, blobs):
        self._blobs = blobs

    def put_many(self, blobs):
        ISSUED_IDS.update(blob_id for blob_id, _, _ in blobs)
        return self._blobs.put_many(blobs)

    def __getattr__(self, name):
        return getattr(self._blobs, name)


class RawClient:
    """A byte-exact SMTP client over a plain socket (smtplib would normalise line endings)."""

    def __init__(self, port: int, timeout: float = 15.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """One complete (possibly multi-line) reply, as text; "" if the server closed the connection."""
        lines = []
        while True:
            while b"\r\n" not in self._buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "\n".join(lines)
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def command(self, line: str | bytes) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (TimeoutError, OSError):
            return False

    def close(self) -> None:
        self.sock.close()


def envelope(client: RawClient, sender: str, *recipients: str) -> None:
    """EHLO, MAIL and RCPT on a raw client, asserting each is accepted."""
    assert client.command("EHLO client.test.invalid").startswith("250")
    assert client.command(f"MAIL FROM:<{sender}>").startswith("250")
    for rcpt in recipients:
        reply = client.command(f"RCPT TO:<{rcpt}>")
        assert reply.startswith("250"), reply


class EventReader:
    """Reads the `mail.received` events this test run's ingest published, from the tests' own queue
    (events other processes publish on the shared broker are skipped)."""

    def __init__(self):
        self.connection = Connection(get_settings().amqp_url)
        self.channel = self.connection.channel()
        declare(self.channel, [EVENTS])
        self.channel.queue_purge(EVENTS.queue_name)
        self.events = QueueEvents(self.channel, EVENTS.queue_name)

    def get(self, timeout: float = 10.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.events.get()
            if event is None:
                time.sleep(0.05)
                continue
            if event.get("payload", {}).get("message_id") in ISSUED_IDS:
                return event
        return None

    def drain(self, wait: float = 0.5) -> list[dict]:
        """Every event that arrives within `wait` seconds of the last one."""
        events = []
        while (event := self.get(wait)) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self.connection.release()


# --- fixtures shared by the ingest integration tests (imported by their modules) -----------------------

CAMILLE = f"camille.martin@{DOMAIN}"
CAMILLE_PASSWORD = "Correct-Horse-Battery-2026!"


def make_directory(**overrides):
    """The in-memory directory the integration tests give the real servers."""
    from ingest.recipients import StaticDirectory

    values = {
        "mailboxes": {CAMILLE, f"dominique.durand@{DOMAIN}"},
        "aliases": {f"c.martin@{DOMAIN}": CAMILLE},
        "suspended": {f"claude.suspendu@{DOMAIN}"},
        "deleted": {f"alex.supprime@{DOMAIN}"},
        "passwords": {CAMILLE: CAMILLE_PASSWORD},
    }
    values.update(overrides)
    return StaticDirectory(DOMAIN, **values)


def stored_blob_ids(database) -> list[str]:
    """Ids of complete blobs in the database."""
    return [doc["_id"] for doc in database["blobs.files"].find({}, {"_id": 1})]


def leftover_chunks(database) -> int:
    """GridFS chunks of any blob, complete or not (a half-written store leaves chunks behind)."""
    return database["blobs.chunks"].count_documents({})


def queued_id(reply_text: str) -> str:
    """The message id in ingest's "250 2.0.0 OK: queued as <id>" reply."""
    return reply_text.rsplit(" ", 1)[-1].strip()


# --- pytest fixtures (test modules import the ones they use) ------------------------------------------

DEFAULT_LIMITS = IngestLimits(session_deadline=60, idle_timeout=30, commit_timeout=15)


@pytest.fixture(scope="module")
def tls_folder(tmp_path_factory):
    """A folder with a throw-away certificate, shared by a module's tests."""
    return tmp_path_factory.mktemp("tls")


@pytest.fixture
def events():
    """The `mail.received` events published during the test (the tests' own queue, purged first)."""
    reader = EventReader()
    yield reader
    reader.close()


@pytest.fixture
def publisher():
    """A real publisher, as ingest uses it."""
    from common.bus import EventPublisher

    publisher = EventPublisher(source="ingest")
    yield publisher
    publisher.close()


@pytest.fixture
def directory():
    """The in-memory directory (see make_directory)."""
    return make_directory()


@pytest.fixture
def limits(request):
    """ingest's limits; override with `@pytest.mark.parametrize("limits", [...], indirect=True)`."""
    return getattr(request, "param", DEFAULT_LIMITS)


@pytest.fixture
def blobs(database):
    """The blob store of the test's fresh database."""
    from common.db import BlobStore

    return BlobStore(database)


@pytest.fixture
def ingest(blobs, directory, publisher, tls_folder, events, limits):
    """ingest's real servers on free ports, against the fresh database and the real broker."""
    with running_ingest(
        directory=directory, blobs=blobs, publisher=publisher, tls_folder=tls_folder, limits=limits
    ) as thread:
        yield thread


#: The webmail's service identity on the submission port (SUBMISSION_SERVICE_USER / _SECRET) in tests.
WEBMAIL_SECRET = "secret-du-webmail-pour-les-tests"
DOMINIQUE = f"dominique.durand@{DOMAIN}"


@pytest.fixture
def webmail_ingest(blobs, directory, publisher, tls_folder, events):
    """`ingest` with the webmail's service identity, for the proxy login (SASL PLAIN with an authzid)."""
    from ingest.handler import ServiceIdentity

    with running_ingest(
        directory=directory,
        blobs=blobs,
        publisher=publisher,
        tls_folder=tls_folder,
        service_identity=ServiceIdentity("webmail", WEBMAIL_SECRET),
    ) as thread:
        yield thread
