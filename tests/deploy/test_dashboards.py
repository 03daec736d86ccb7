"""Every metric a Grafana panel or a Prometheus rule queries is one the platform really exports.

The services that exist are started as processes (tests/deploy/live.py) with a little mail driven
through them; their live /metrics pages and RabbitMQ's per-queue page (/metrics/per-object) give the
exported names, which every panel's PromQL must stay within.
"""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from tests.deploy.live import RABBITMQ_METRICS, exported_names, live_platform
from tests.deploy.promql import metric_names
from tests.deploy.tools import DEPLOY, rules_spec

pytestmark = pytest.mark.integration

DASHBOARDS = sorted((DEPLOY / "base" / "monitoring" / "dashboards").glob("*.json"))
#: Series Prometheus makes itself, and kube-state-metrics' series that the rules use in the cluster.
NOT_FROM_SERVICES = {"up", "kube_deployment_status_replicas_available"}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return [p for p in found if p.get("targets")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    from common.db import get_client

    name = f"test_dash_{uuid.uuid4().hex[:8]}"
    client = get_client()
    try:
        with live_platform(client[name], tmp_path_factory.mktemp("services")) as platform:
            names = set()
            for service in platform.processes:
                names |= exported_names(platform.metrics(service))
            with urllib.request.urlopen(f"http://{RABBITMQ_METRICS}/metrics/per-object", timeout=10) as resp:
                names |= exported_names(resp.read().decode())
            return names
    finally:
        client.drop_database(name)


def test_dashboards_are_valid_grafana_json():
    assert {p.name for p in DASHBOARDS} == {
        "webmail-pipeline.json",
        "webmail-services.json",
        "webmail-infrastructure.json",
    }
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in panels(dashboard):
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_every_dashboard_metric_is_exported(exported):
    recorded = {
        rule["record"] for group in rules_spec()["groups"] for rule in group["rules"] if "record" in rule
    }
    missing = []
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel["targets"]:
                for name in metric_names(target["expr"]) - exported - recorded - NOT_FROM_SERVICES:
                    missing.append(f"{path.name}: «{panel['title']}» queries {name}")
    assert not missing, "\n".join(missing)


def test_every_rule_metric_is_exported(exported):
    recorded = {
        rule["record"] for group in rules_spec()["groups"] for rule in group["rules"] if "record" in rule
    }
    missing = []
    for group in rules_spec()["groups"]:
        for rule in group["rules"]:
            for name in metric_names(str(rule["expr"])) - exported - recorded - NOT_FROM_SERVICES:
                missing.append(f"{rule.get('alert') or rule.get('record')} queries {name}")
    assert not missing, "\n".join(missing)


def test_the_metric_extraction_sees_a_misspelt_metric(exported):
    assert metric_names("sum(rate(scan_verdict_total[5m]))") - exported == {"scan_verdict_total"}
