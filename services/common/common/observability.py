"""`/metrics` and `/healthz` for every service, on a port of its own.

`serve_observability(port, checks)` starts a small HTTP server in a background thread (a green thread in
the nameko services, where eventlet patches threading). `/metrics` is Prometheus' text format from the
process's default registry; `/healthz` runs every check and answers 200 with `{"status": "ok", ...}` when
all pass, 503 with the failing ones otherwise. A check is a callable returning True when healthy; one
that raises counts as failing. Checks should be cheap: Kubernetes probes call them every few seconds.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

HealthCheck = Callable[[], bool]


def run_checks(checks: Mapping[str, HealthCheck]) -> tuple[bool, dict[str, str]]:
    """Run every check; returns (all healthy, {name: "ok" | "failing" | "error: ..."})."""
    results: dict[str, str] = {}
    healthy = True
    for name, check in checks.items():
        try:
            ok = bool(check())
            results[name] = "ok" if ok else "failing"
        except Exception as exc:  # noqa: BLE001 - a health check must report, not crash
            ok = False
            results[name] = f"error: {type(exc).__name__}"
        healthy = healthy and ok
    return healthy, results


class ObservabilityServer:
    """The running HTTP server; `close()` stops it."""

    def __init__(self, host: str, port: int, service: str, checks: Mapping[str, HealthCheck]):
        checks = dict(checks)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest())
                elif path == "/healthz":
                    healthy, results = run_checks(checks)
                    body = {"service": service, "status": "ok" if healthy else "unhealthy", "checks": results}
                    self._send(200 if healthy else 503, "application/json", json.dumps(body).encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:
                pass  # scrapes every few seconds would drown the service's own logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{service}-observability")
        self._thread.daemon = True
        self._thread.start()
        log.info("serving /metrics and /healthz", extra={"port": self.port})

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()


def serve_observability(
    service: str, port: int, checks: Mapping[str, HealthCheck] | None = None, host: str | None = None
) -> ObservabilityServer:
    """Start `/metrics` and `/healthz` for `service` on `port` (METRICS_HOST unless `host` is given)."""
    from common.config import get_settings

    return ObservabilityServer(host or get_settings().metrics_host, port, service, checks or {})
