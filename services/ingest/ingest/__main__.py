"""`python -m ingest`: the MX (SMTP_MX_PORT) and submission (SMTP_SUBMISSION_PORT) servers, with
/metrics and /healthz on INGEST_METRICS_PORT; SIGTERM or SIGINT stop it gracefully.

ingest is an asyncio process: eventlet is imported (common.bus imports nameko) but never
monkey-patched here, since only `common.nameko_runner` patches and ingest never imports it.
"""

from __future__ import annotations

import warnings

# nameko (imported by common.bus) imports eventlet, which warns that it is deprecated on import; ingest
# does not use eventlet at all, so the warning is noise here.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import asyncio  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

import uvloop  # noqa: E402
from kombu import Connection  # noqa: E402

from common.bus import EventPublisher  # noqa: E402
from common.config import Settings, get_settings  # noqa: E402
from common.db import BlobStore, get_database, ping  # noqa: E402
from common.logs import setup_logging  # noqa: E402
from common.observability import serve_observability  # noqa: E402
from directory.client import DirectoryClient  # noqa: E402
from ingest.handler import ServiceIdentity  # noqa: E402
from ingest.recipients import CachedRecipients, DirectoryRecipients  # noqa: E402
from ingest.server import IngestLimits  # noqa: E402
from ingest.service import IngestService  # noqa: E402
from ingest.tls import load_context  # noqa: E402

log = logging.getLogger("ingest")


def broker_reachable(url: str) -> bool:
    """Health check: an AMQP connection to the broker opens."""
    with Connection(url, connect_timeout=2) as connection:
        connection.ensure_connection(max_retries=1)
    return True


async def serve(settings: Settings) -> None:
    """Run both SMTP servers until SIGTERM/SIGINT."""
    server_name = settings.ingest_hostname or socket.getfqdn()
    tls_context = load_context(
        settings.ingest_tls_cert, settings.ingest_tls_key, settings.state_path, server_name
    )
    client = DirectoryClient(settings.directory_address, timeout=settings.ingest_directory_timeout)
    publisher = EventPublisher(source="ingest")
    service = IngestService(
        mail_domain=settings.mail_domain,
        directory=CachedRecipients(DirectoryRecipients(client, settings.mail_domain)),
        blobs=BlobStore(get_database()),
        publisher=publisher,
        tls_context=tls_context,
        limits=IngestLimits.from_settings(settings),
        host=settings.smtp_host,
        mx_port=settings.smtp_mx_port,
        submission_port=settings.smtp_submission_port,
        server_name=server_name,
        service_identity=ServiceIdentity(
            settings.submission_service_user, settings.submission_service_secret
        ),
    )
    await service.start()
    observability = serve_observability(
        "ingest",
        settings.ingest_metrics_port,
        checks={"database": ping, "broker": lambda: broker_reachable(settings.amqp_url)},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop(settings.ingest_shutdown_grace)
    observability.close()
    publisher.close()
    client.close()


def main() -> None:
    """Entry point."""
    setup_logging("ingest")
    # uvloop: libuv's event loop, a drop-in for asyncio's with cheaper socket reads and writes (the SMTP
    # dialogue is most of ingest's CPU; BENCHMARKS.md).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(get_settings()))


if __name__ == "__main__":
    main()
