"""Prometheus rules: `promtool check rules` and `promtool test rules` (synthetic series, rules_test.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.tools import promtool, rules_spec

HERE = Path(__file__).resolve().parent


def write_rules(directory: Path) -> Path:
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(rules_spec(), sort_keys=False))
    return path


def test_rules_are_valid(tmp_path):
    out = subprocess.run(
        [promtool(), "check", "rules", str(write_rules(tmp_path))], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rules_fire_on_synthetic_series(tmp_path):
    write_rules(tmp_path)
    shutil.copy(HERE / "rules_test.yml", tmp_path / "rules_test.yml")
    out = subprocess.run(
        [promtool(), "test", "rules", "rules_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_severity_and_a_runbook_section_that_exists():
    runbook = (HERE.parents[1] / "docs" / "operations.md").read_text()
    anchors = {_anchor(line) for line in runbook.splitlines() if line.startswith("#")}
    alerts = [rule for group in rules_spec()["groups"] for rule in group["rules"] if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "WebmailQueueBacklog",
        "WebmailScanErrors",
        "WebmailClamdDown",
        "WebmailDeadLettersGrowing",
        "WebmailDeliveryLatencyHigh",
        "WebmailAuthenticationFailureSpike",
        "WebmailSmtpTemporaryFailures",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        section = alert["annotations"]["runbook"].split("#", 1)[1]
        assert section in anchors, f"{alert['alert']}: no section #{section} in docs/operations.md"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.lstrip("#").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")
