"""`python -m webmail`: the webmail on WEBMAIL_HOST:WEBMAIL_PORT, with /metrics and /healthz on
WEBMAIL_METRICS_PORT; SIGTERM or SIGINT stop it gracefully.

The webmail is an asyncio process: eventlet is imported (common.bus imports nameko) but never
monkey-patched here.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import asyncio  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402

from aiohttp import web  # noqa: E402

from common.bus import EventPublisher  # noqa: E402
from common.config import Settings, get_settings  # noqa: E402
from common.db import ensure_indexes, get_database, ping  # noqa: E402
from common.logs import setup_logging  # noqa: E402
from common.observability import serve_observability  # noqa: E402
from directory.client import AsyncDirectoryClient  # noqa: E402
from webmail import sessions  # noqa: E402
from webmail.app import create_app  # noqa: E402

log = logging.getLogger("webmail")


async def serve(settings: Settings) -> None:
    """Run the web server until SIGTERM/SIGINT."""
    database = get_database()
    ensure_indexes(database, sessions.INDEXES)
    directory = AsyncDirectoryClient(settings.directory_address)
    publisher = EventPublisher(source="webmail")
    app = create_app(settings, database=database, directory=directory, publisher=publisher)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.webmail_host, settings.webmail_port)
    await site.start()
    observability = serve_observability("webmail", settings.webmail_metrics_port, checks={"database": ping})
    log.info("webmail listening on %s:%s", settings.webmail_host, settings.webmail_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    observability.close()
    publisher.close()
    await directory.close()


def main() -> None:
    settings = get_settings()
    setup_logging("webmail", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
