"""`python -m directory`: serve the directory over gRPC on DIRECTORY_ADDRESS, with /metrics and /healthz on
DIRECTORY_METRICS_PORT; SIGTERM and SIGINT stop it gracefully (running calls get a few seconds)."""

from __future__ import annotations

import asyncio
import logging
import signal

from common.config import get_settings
from common.db import get_database, ping
from common.logs import setup_logging
from common.observability import serve_observability
from directory.server import DirectoryServer
from directory.service import Directory

log = logging.getLogger("directory")


async def serve() -> None:
    """Run until SIGTERM/SIGINT."""
    settings = get_settings()
    directory = Directory(get_database())
    server = DirectoryServer(
        directory,
        settings.directory_address,
        admin_token=settings.directory_admin_token,
        refresh_seconds=settings.search_refresh_seconds,
    )
    observability = serve_observability(
        "directory", settings.directory_metrics_port, checks={"database": ping}
    )
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("directory stopping")
    await server.stop(grace=5.0)
    observability.close()


def main() -> None:
    """Entry point."""
    setup_logging("directory")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
