"""The ingest service: the MX and submission SMTP servers of one process, started and stopped together.

`IngestService` takes its collaborators as arguments (the directory, the blob store, the event
publisher, the TLS context), so tests run the real servers against a fresh database or a failing
publisher. `python -m ingest` (see `__main__`) builds the production ones from the settings.

Shutdown (SIGTERM) is graceful and bounded: the listening sockets close at once; sessions between
transactions get 421 4.3.2 right away; sessions in the middle of one may finish it for up to
INGEST_SHUTDOWN_GRACE seconds (a message being committed always gets its reply), then get 421 too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ingest import codes
from ingest.commit import BlobWriter, Committer, EventSink
from ingest.handler import IngestHandler, ServiceIdentity
from ingest.recipients import RecipientDirectory
from ingest.server import IngestLimits, IngestSMTP, SessionTracker

log = logging.getLogger(__name__)


class IngestService:
    """Both SMTP servers of ingest, sharing one session tracker and one set of executors."""

    def __init__(
        self,
        *,
        mail_domain: str,
        directory: RecipientDirectory,
        blobs: BlobWriter,
        publisher: EventSink,
        tls_context: ssl.SSLContext | None,
        limits: IngestLimits | None = None,
        host: str = "127.0.0.1",
        mx_port: int = 2525,
        submission_port: int = 2587,
        server_name: str | None = None,
        service_identity: ServiceIdentity | None = None,
    ):
        self.limits = limits or IngestLimits()
        self.service_identity = service_identity
        self.mail_domain = mail_domain
        self.host = host
        self.requested_ports = {"mx": mx_port, "submission": submission_port}
        self.server_name = server_name or socket.getfqdn()
        self.tls_context = tls_context
        self.tracker = SessionTracker(self.limits.max_sessions)
        # Separate pools: a slow directory must not starve the store and publish of accepted messages.
        self.io_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ingest-io")
        self.directory_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ingest-directory")
        self.committer = Committer(blobs, publisher, self.io_executor, self.limits.commit_timeout)
        self.directory = directory
        self._servers: dict[str, asyncio.Server] = {}

    def handler(self, origin: str) -> IngestHandler:
        """The aiosmtpd handler of one port."""
        return IngestHandler(
            origin=origin,
            mail_domain=self.mail_domain,
            server_name=self.server_name,
            directory=self.directory,
            committer=self.committer,
            directory_executor=self.directory_executor,
            limits=self.limits,
            tracker=self.tracker,
            service=self.service_identity if origin == "submission" else None,
        )

    def _protocol_factory(self, origin: str) -> Callable[[], IngestSMTP]:
        handler = self.handler(origin)
        if origin == "submission":
            if self.tls_context is None:
                raise ValueError("the submission port needs a TLS context (STARTTLS before AUTH)")
            options: dict[str, Any] = {
                "require_starttls": True,
                "auth_required": True,
                "auth_require_tls": True,
            }
        else:
            # Opportunistic STARTTLS for servers that offer it; no logins on the MX port.
            options = {"auth_exclude_mechanism": ["PLAIN", "LOGIN"]}

        def make() -> IngestSMTP:
            return IngestSMTP(
                handler,
                origin=origin,
                limits=self.limits,
                tracker=self.tracker,
                hostname=self.server_name,
                tls_context=self.tls_context,
                **options,
            )

        return make

    async def start(self) -> None:
        """Listen on both ports."""
        loop = asyncio.get_running_loop()
        for origin, port in self.requested_ports.items():
            self._servers[origin] = await loop.create_server(
                self._protocol_factory(origin), host=self.host, port=port, reuse_address=True
            )
            log.info(
                "SMTP server listening",
                extra={"origin": origin, "host": self.host, "port": self.port(origin)},
            )

    def port(self, origin: str) -> int:
        """The port `origin` ("mx" or "submission") actually listens on (useful with port 0)."""
        return self._servers[origin].sockets[0].getsockname()[1]

    @property
    def mx_port(self) -> int:
        return self.port("mx")

    @property
    def submission_port(self) -> int:
        return self.port("submission")

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, let transactions in progress finish for up to `grace` seconds, then close."""
        loop = asyncio.get_running_loop()
        self.tracker.draining = True
        for server in self._servers.values():
            server.close()
        log.info("ingest stopping", extra={"sessions": len(self.tracker.sessions), "grace": grace})
        deadline = loop.time() + grace
        while self.tracker.sessions and loop.time() < deadline:
            for session in list(self.tracker.sessions):
                if not session.in_transaction:
                    session.cut(codes.SHUTTING_DOWN, "shutdown")
            await asyncio.sleep(0.05)
        for session in list(self.tracker.sessions):
            session.cut(codes.SHUTTING_DOWN, "shutdown")
        if self.tracker.commits:
            # Commits are bounded by their own timeout; each one's client gets its reply first.
            await asyncio.wait(set(self.tracker.commits), timeout=self.limits.commit_timeout + 5)
        for server in self._servers.values():
            await server.wait_closed()
        self.directory_executor.shutdown(wait=False, cancel_futures=True)
        # Let pending deletions of refused blobs finish, within reason.
        try:
            await asyncio.wait_for(loop.run_in_executor(None, self.io_executor.shutdown, True), 10)
        except TimeoutError:
            log.warning("ingest stopped with database work still running")
        log.info("ingest stopped")
