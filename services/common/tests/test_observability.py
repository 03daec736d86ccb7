"""/metrics and /healthz."""

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import Counter

from common.observability import run_checks, serve_observability

PROBE_COUNTER = Counter("observability_test_probe_total", "A counter only this test increments.")


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def server():
    state = {"healthy": True}
    server = serve_observability("test", 0, {"flag": lambda: state["healthy"]}, host="127.0.0.1")
    yield server, state
    server.close()


def test_metrics_expose_the_default_registry(server):
    srv, _ = server
    PROBE_COUNTER.inc()
    status, body = get(srv.port, "/metrics")
    assert status == 200
    assert b"observability_test_probe_total 1.0" in body


def test_healthz_reflects_the_checks(server):
    srv, state = server
    status, body = get(srv.port, "/healthz")
    assert status == 200
    assert json.loads(body)["checks"] == {"flag": "ok"}
    state["healthy"] = False
    status, body = get(srv.port, "/healthz")
    assert status == 503
    assert json.loads(body) == {"service": "test", "status": "unhealthy", "checks": {"flag": "failing"}}


def test_a_check_that_raises_counts_as_failing():
    def broken():
        raise ConnectionError("down")

    assert run_checks({"db": broken}) == (False, {"db": "error: ConnectionError"})


def test_unknown_paths_are_404(server):
    srv, _ = server
    assert get(srv.port, "/nope")[0] == 404
