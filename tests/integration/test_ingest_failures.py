"""Internal failures during a transaction: the client gets 451 4.3.0 (never 5xx), and nothing
half-delivered remains (no blob, no event). Also `python -m ingest` as a real process: health, metrics
and a graceful SIGTERM.
"""

# The fixtures come from tests/smtp_helpers.py; ruff sees the test arguments as redefining them.
# ruff: noqa: F811

from __future__ import annotations

import signal
import smtplib
import time
import urllib.request

import pymongo
import pytest

from common.bus import EventPublisher, PublishError
from common.db import BlobStore
from ingest import codes
from ingest.server import IngestLimits
from tests.helpers import ServiceProcess, free_port, wait_until
from tests.smtp_helpers import (  # noqa: F401 - fixtures
    CAMILLE,
    RawClient,
    directory,
    events,
    make_directory,
    publisher,
    running_ingest,
    stored_blob_ids,
    tls_folder,
)

CLEAN = b"From: a@example.org\r\nSubject: failure\r\n\r\nhello\r\n"


def send(port: int) -> tuple[int, bytes]:
    """One clean message on the MX port; returns the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mail.example.org")
        assert client.mail("a@example.org")[0] == 250
        assert client.rcpt(CAMILLE)[0] == 250
        return client.data(CLEAN)


def assert_nothing_delivered(database, events) -> None:
    wait_until(lambda: not stored_blob_ids(database), timeout=10, what="the refused blob to be deleted")
    wait_until(lambda: database["blobs.chunks"].count_documents({}) == 0, timeout=10, what="no chunks")
    assert events.get(timeout=0.3) is None


class RefusingPublisher:
    """A publisher whose broker refuses every event."""

    source = "ingest"

    def __init__(self):
        self.attempts = 0

    def publish_many(self, envelopes):
        self.attempts += len(envelopes)
        return [PublishError("the broker refused event mail.received (basic.nack)", "nacked")] * len(
            envelopes
        )


def test_a_publish_failure_answers_451_and_deletes_the_blob(database, directory, events, tls_folder):
    failing = RefusingPublisher()
    with running_ingest(
        directory=directory, blobs=BlobStore(database), publisher=failing, tls_folder=tls_folder
    ) as ingest:
        code, text = send(ingest.mx_port)
    assert (code, text) == (451, codes.INTERNAL_ERROR[4:].encode())
    assert failing.attempts == 1
    assert_nothing_delivered(database, events)


def test_a_broker_that_is_down_answers_451(database, directory, events, tls_folder):
    down = EventPublisher(source="ingest", amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    try:
        with running_ingest(
            directory=directory, blobs=BlobStore(database), publisher=down, tls_folder=tls_folder
        ) as ingest:
            code, _ = send(ingest.mx_port)
    finally:
        down.close()
    assert code == 451
    assert_nothing_delivered(database, events)


def test_a_database_that_is_down_answers_451_and_publishes_nothing(publisher, directory, events, tls_folder):
    unreachable = pymongo.MongoClient(f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=300)
    try:
        with running_ingest(
            directory=directory,
            blobs=BlobStore(unreachable["down"]),
            publisher=publisher,
            tls_folder=tls_folder,
        ) as ingest:
            code, _ = send(ingest.mx_port)
    finally:
        unreachable.close()
    assert code == 451
    assert events.get(timeout=0.5) is None


class LosingBlobStore(BlobStore):
    """Writes the blob, then loses the acknowledgement (a network failure after the write)."""

    def put_many(self, blobs):
        super().put_many(blobs)
        raise pymongo.errors.AutoReconnect("connection lost after write")


def test_a_store_that_fails_after_writing_leaves_no_blob(database, publisher, directory, events, tls_folder):
    with running_ingest(
        directory=directory, blobs=LosingBlobStore(database), publisher=publisher, tls_folder=tls_folder
    ) as ingest:
        code, _ = send(ingest.mx_port)
    assert code == 451
    assert_nothing_delivered(database, events)


class BrokenDirectory:
    """A directory with a bug: raises something the handler does not expect."""

    def known(self, address):
        return None

    def resolve(self, address):
        raise ValueError("unexpected")

    def authenticate(self, username, password, client_ip):
        raise ValueError("unexpected")


def test_an_unexpected_exception_answers_451_not_500(database, publisher, events, tls_folder):
    with running_ingest(
        directory=BrokenDirectory(), blobs=BlobStore(database), publisher=publisher, tls_folder=tls_folder
    ) as ingest:
        client = RawClient(ingest.mx_port)
        client.command("EHLO mail.example.org")
        client.command("MAIL FROM:<a@example.org>")
        assert client.command(f"RCPT TO:<{CAMILLE}>") == codes.INTERNAL_ERROR
        assert client.command("NOOP").startswith("250")  # the session survives
        client.close()


@pytest.fixture
def ingest_process(database, tmp_path):
    ports = {"mx": free_port(), "submission": free_port(), "metrics": free_port()}
    service = ServiceProcess(
        ["-m", "ingest"],
        env={
            "DATABASE_NAME": database.name,
            "SMTP_MX_PORT": str(ports["mx"]),
            "SMTP_SUBMISSION_PORT": str(ports["submission"]),
            "INGEST_METRICS_PORT": str(ports["metrics"]),
            "DIRECTORY_ADDRESS": f"127.0.0.1:{free_port()}",  # no directory: RCPT answers 451 4.4.3
            "INGEST_DIRECTORY_TIMEOUT": "1",
            "STATE_DIR": str(tmp_path / "state"),
            "INGEST_SHUTDOWN_GRACE": "5",
        },
        health_port=ports["metrics"],
        log_path=tmp_path / "ingest.log",
    )
    try:
        service.wait_healthy()
        yield service, ports
    finally:
        service.stop()


def test_the_service_process_serves_health_metrics_and_stops_gracefully(ingest_process, tmp_path):
    service, ports = ingest_process
    with smtplib.SMTP("127.0.0.1", ports["mx"], timeout=10) as client:
        client.ehlo("mail.example.org")
        assert client.has_extn("starttls")
        client.mail("a@example.org")
        code, text = client.rcpt(CAMILLE)
        assert (code, text[:5]) == (451, b"4.4.3")  # no directory running: temporary, never 5xx
    with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as client:
        client.ehlo("laptop")
        assert client.has_extn("starttls")
    assert (tmp_path / "state" / "data" / "tls" / "ingest.crt").exists()  # development certificate
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'ingest_sessions_total{origin="mx"} 1.0' in metrics
    assert 'ingest_recipients_refused_total{code="451 4.4.3",origin="mx"} 1.0' in metrics

    idle = RawClient(ports["mx"])
    assert service.stop(signal.SIGTERM) == 0
    assert idle.reply() == codes.SHUTTING_DOWN  # an idle session is told, not dropped
    idle.close()
    assert '"ingest stopped"' in (tmp_path / "ingest.log").read_text()


class SlowPublisher:
    """The real publisher, after a delay: a commit that takes a while."""

    def __init__(self, publisher, delay: float):
        self.publisher = publisher
        self.source = publisher.source
        self.delay = delay

    def publish_many(self, envelopes):
        time.sleep(self.delay)
        return self.publisher.publish_many(envelopes)


def test_a_deadline_during_the_commit_waits_for_the_reply(database, publisher, directory, events, tls_folder):
    limits = IngestLimits(session_deadline=1.0, idle_timeout=30, commit_timeout=15)
    with running_ingest(
        directory=directory,
        blobs=BlobStore(database),
        publisher=SlowPublisher(publisher, 2.0),
        tls_folder=tls_folder,
        limits=limits,
    ) as ingest:
        client = RawClient(ingest.mx_port)
        client.command("EHLO mail.example.org")
        client.command("MAIL FROM:<a@example.org>")
        client.command(f"RCPT TO:<{CAMILLE}>")
        client.command("DATA")
        assert client.command(CLEAN + b".").startswith("250 2.0.0")  # the deadline passed meanwhile
        assert client.reply() == codes.SESSION_DEADLINE
        client.close()
    assert events.get() is not None


def test_a_client_that_leaves_during_the_commit_still_gets_its_message_kept(
    database, publisher, directory, events, tls_folder
):
    with running_ingest(
        directory=directory,
        blobs=BlobStore(database),
        publisher=SlowPublisher(publisher, 1.0),
        tls_folder=tls_folder,
    ) as ingest:
        client = RawClient(ingest.mx_port)
        client.command("EHLO mail.example.org")
        client.command("MAIL FROM:<a@example.org>")
        client.command(f"RCPT TO:<{CAMILLE}>")
        client.command("DATA")
        client.send(CLEAN + b".\r\n")
        client.close()  # gone before the reply
        event = events.get()
    assert event is not None
    assert stored_blob_ids(database) == [event["payload"]["message_id"]]
