"""Runs a nameko service as a process: eventlet, logging, /metrics, /healthz, graceful stop.

eventlet must patch the standard library before anything else imports it, so a nameko service's
`__main__.py` imports this module first:

    from common.nameko_runner import run_service  # noqa: I001 - must come first (eventlet)
    from scan.service import ScanService
    run_service(ScanService, "scan", settings.scan_metrics_port)

eventlet stays inside the nameko services; ingest, directory and the webmail are asyncio processes.
"""

import warnings

# eventlet warns that it is in maintenance mode; the project knows (docs/ARCHITECTURE.md) and confines it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import logging  # noqa: E402
import signal  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402

from kombu import Connection  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from common.config import get_settings  # noqa: E402
from common.logs import setup_logging  # noqa: E402
from common.observability import serve_observability  # noqa: E402

log = logging.getLogger(__name__)


def nameko_config() -> dict:
    """The nameko configuration derived from the platform settings."""
    settings = get_settings()
    return {
        "AMQP_URI": settings.amqp_url,
        "max_workers": settings.worker_count,
        "serializer": "json",
        "HEARTBEAT": 30,
    }


def amqp_reachable(url: str | None = None) -> bool:
    """True when a fresh AMQP connection to the broker succeeds within two seconds."""
    with Connection(url or get_settings().amqp_url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.connected


class QueueDepthCollector:
    """Prometheus collector: depth of this service's work, retry and dead-letter queues, read at scrape time.

    Operators scale on these (the KEDA objects read the same numbers from RabbitMQ) and alert on
    dead-letter growth. A broker that does not answer within two seconds yields no samples, not an error.
    """

    def __init__(self, service: str):
        self.service = service

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from common.topology import CONSUMERS

        settings = get_settings()
        family = GaugeMetricFamily(
            "bus_queue_depth", "Messages waiting in this service's queues.", labels=["queue", "kind"]
        )
        specs = [spec for spec in CONSUMERS if spec.service == self.service]
        try:
            with Connection(settings.amqp_url, connect_timeout=2) as conn:
                channel = conn.channel()
                queues = [(spec.queue_name, "work") for spec in specs]
                queues += [(spec.dead_letter_queue_name, "dead") for spec in specs]
                queues += [
                    (spec.retry_queue_name(delay), "retry")
                    for spec in specs
                    for delay in settings.retry_delay_seconds()
                ]
                for name, kind in queues:
                    try:
                        _, depth, _ = channel.queue_declare(name, passive=True)
                    except Exception:  # noqa: BLE001 - a queue not declared yet has no depth
                        channel = conn.channel()
                        continue
                    family.add_metric([name, kind], depth)
        except Exception:  # the broker being away must not break /metrics
            log.warning("cannot read queue depths", exc_info=True)
        yield family


def run_service(
    service_cls: type,
    name: str,
    metrics_port: int,
    checks: Mapping[str, Callable[[], bool]] | None = None,
) -> None:
    """Run `service_cls` until SIGTERM or SIGINT, then stop it gracefully (in-flight workers finish)."""
    setup_logging(name)
    REGISTRY.register(QueueDepthCollector(name))
    runner = ServiceRunner(nameko_config())
    runner.add_service(service_cls)

    def containers_alive() -> bool:
        return all(not container._died.ready() for container in runner.containers)

    server = serve_observability(
        name, metrics_port, {"containers": containers_alive, "broker": amqp_reachable, **(checks or {})}
    )

    def stop(signum, frame) -> None:
        log.info("stopping on signal %d", signum)
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.start()
    log.info("service started", extra={"metrics_port": metrics_port})
    try:
        runner.wait()
    finally:
        server.close()
        log.info("service stopped")
