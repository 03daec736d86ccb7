"""A local Prometheus, configured as `make run` configures its own, scrapes every running service.

The services that exist run as processes on a private RabbitMQ vhost (tests/deploy/live.py); a Prometheus
of the test's own (Debian's binary, a free port, the configuration and rules scripts/stack.py generates)
must find every series each service's /metrics page shows, RabbitMQ's per-queue series, and load the
platform's rules without errors.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid

import pytest

from common.db import get_client
from tests.deploy.live import RABBITMQ_METRICS, live_platform
from tests.helpers import ROOT, free_port, wait_until


def load_stack():
    """scripts/stack.py as a module (its Prometheus configuration is the one under test)."""
    if "stack" not in sys.modules:
        spec = importlib.util.spec_from_file_location("stack", ROOT / "scripts" / "stack.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["stack"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["stack"]


class Prometheus:
    def __init__(self, port: int):
        self.port = port

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    name = f"test_prom_{uuid.uuid4().hex[:8]}"
    client = get_client()
    try:
        with live_platform(client[name], tmp_path_factory.mktemp("services")) as running:
            yield running
    finally:
        client.drop_database(name)


@pytest.fixture(scope="module")
def prometheus(platform, tmp_path_factory):
    stack = load_stack()
    directory = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    targets = [(name, f"127.0.0.1:{metrics_port}") for name, metrics_port in platform.ports.items()]
    config = stack.write_prometheus_files(directory, targets, RABBITMQ_METRICS)
    log = open(directory / "prometheus.log", "wb")
    proc = subprocess.Popen(
        stack.prometheus_command(config, directory / "tsdb", port), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or stack.prometheus_ready(port), timeout=30, what="Prometheus"
        )
        assert proc.poll() is None, (directory / "prometheus.log").read_text()
        yield Prometheus(port)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def series_names(metrics_page: str) -> set[str]:
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in metrics_page.splitlines()
        if line and not line.startswith("#")
    }


def test_prometheus_finds_every_services_metrics(platform, prometheus):
    jobs = set(platform.processes)
    assert {"scan", "delivery", "notify"} <= jobs

    def all_up():
        up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
        return all(up.get(job) == "1" for job in jobs)

    wait_until(all_up, timeout=30, interval=1, what=f"every job up: {prometheus.query('up')}")
    for job in sorted(jobs):
        expected = series_names(platform.metrics(job))
        found = {r["metric"]["__name__"] for r in prometheus.query(f'count by (__name__) ({{job="{job}"}})')}
        missing = expected - found
        # A series born after the last scrape is found at the next one.
        if missing:
            wait_until(
                lambda job=job, missing=missing: (
                    missing
                    <= {
                        r["metric"]["__name__"]
                        for r in prometheus.query(f'count by (__name__) ({{job="{job}"}})')
                    }
                ),
                timeout=15,
                interval=1,
                what=f"{job}: {sorted(missing)}",
            )
    assert prometheus.query('scan_verdicts_total{job="scan", verdict="clean"}')
    assert prometheus.query('delivery_entries_total{job="delivery"}')


def test_prometheus_sees_the_queues_and_loads_the_rules(platform, prometheus):
    wait_until(
        lambda: prometheus.query(
            f'rabbitmq_queue_messages_ready{{vhost="{platform.vhost}", queue="scan.mail.received"}}'
        ),
        timeout=30,
        interval=1,
        what="per-queue RabbitMQ metrics",
    )
    groups = {g["name"]: g for g in prometheus.api("rules")["groups"]}
    assert {"webmail.recording", "webmail.alerts"} <= set(groups)
    wait_until(
        lambda: all(r.get("health") == "ok" for g in prometheus.api("rules")["groups"] for r in g["rules"]),
        timeout=30,
        interval=1,
        what="every rule evaluated without error",
    )
    wait_until(
        lambda: prometheus.query(f'webmail:queue_messages_ready:max{{vhost="{platform.vhost}"}}'),
        timeout=30,
        interval=1,
        what="the queue-depth recording rule",
    )
