"""The runbook covers what operators do, and shows the peak simulation's figure."""

from __future__ import annotations

import re

from tests.deploy.tools import ROOT

RUNBOOK = ROOT / "docs" / "operations.md"


def test_runbook_has_every_operator_task():
    headings = {line.lstrip("#").strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}
    assert {
        "Scaling for a peak",
        "Reading the dashboards",
        "Dead letters",
        "Antivirus signatures",
        "Maintenance mode",
        "Suspending an account",
        "Backup and restore of the database",
    } <= headings


def test_peak_figure_is_shown_and_small():
    text = RUNBOOK.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "operations-peak.png" in images
    figure = ROOT / "docs" / "operations-peak.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.stat().st_size < 200_000
    assert "PLACEHOLDER" not in text
