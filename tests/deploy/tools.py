"""Helpers of the deployment tests: the pinned tools (kustomize, promtool) and the rendered manifests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from common.config import get_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
#: Kubernetes version whose schemas (from the kubernetes-validate package) the manifests must satisfy.
KUBERNETES_VERSION = "1.33"


def kustomize() -> str:
    """The kustomize binary scripts/bootstrap.sh builds into the project's bin folder."""
    local = get_settings().state_path / "bin" / "kustomize"
    if local.exists():
        return str(local)
    found = shutil.which("kustomize")
    if found is None:
        raise AssertionError("kustomize is missing: run `make bootstrap` (it builds var/bin/kustomize)")
    return found


def promtool() -> str:
    """promtool, from Debian's `prometheus` package."""
    found = shutil.which("promtool")
    if found is None:
        raise AssertionError("promtool is missing: run `make bootstrap` (Debian package prometheus)")
    return found


def render(overlay: str) -> list[dict]:
    """`kustomize build deploy/overlays/<overlay>`, parsed into a list of objects."""
    out = subprocess.run(
        [kustomize(), "build", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"kustomize build {overlay} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def rules_spec() -> dict:
    """The rule groups of the PrometheusRule, as a plain Prometheus rule file."""
    rule = yaml.safe_load((DEPLOY / "base" / "monitoring" / "prometheusrule.yaml").read_text())
    return rule["spec"]
