"""The Kubernetes manifests: both overlays render, every object is valid, and the platform's rules hold.

Core kinds are validated (strict: unknown fields fail) against the Kubernetes JSON schemas that the
kubernetes-validate package ships, for KUBERNETES_VERSION; custom resources against the schemas of
crd_schemas.py. No network is used.
"""

from __future__ import annotations

import importlib.util
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schemas import CRD_SCHEMAS
from tests.deploy.tools import DEPLOY, KUBERNETES_VERSION, OVERLAYS, ROOT, render

SERVICES = ("ingest", "scan", "spam", "delivery", "directory", "notify", "webmail")
AUTOSCALED = ("scan", "spam", "delivery")
#: Secrets the prod overlay expects the operators to create (docs/operations.md, "Secrets").
EXTERNAL_SECRETS = {"webmail-secrets", "mongodb-webmail-password", "smtp-tls", "webmail-tls"}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_every_object_is_valid_against_its_schema(rendered):
    overlay, objects = rendered
    problems = []
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        if key in CRD_SCHEMAS:
            for error in jsonschema.Draft202012Validator(CRD_SCHEMAS[key]).iter_errors(obj):
                problems.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {key} (add it to crd_schemas.py)")
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
    assert not problems, "\n".join(problems)


def test_a_schema_violation_is_caught():
    """The validation is not vacuous: a misspelt field fails, for a core kind and for a CRD."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replica": 2},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = yaml.safe_load_all((DEPLOY / "components" / "keda" / "scaledobjects.yaml").read_text())
    scaled = next(iter(scaled))
    scaled["spec"]["pollingIntervall"] = 10
    assert list(
        jsonschema.Draft202012Validator(CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]).iter_errors(scaled)
    )


def test_every_service_runs_non_root_read_only_with_probes_and_resources(rendered):
    overlay, objects = rendered
    deployments = by_kind(objects, "Deployment")
    assert set(SERVICES) | {"clamd"} <= set(deployments)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{overlay} {name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
        for container in pod["containers"]:
            if container["name"] == "freshclam":
                continue  # a sidecar: clamd's probes speak for the pod
            assert "readinessProbe" in container and "livenessProbe" in container, (
                f"{name}/{container['name']}"
            )


def test_every_deployment_has_a_disruption_budget_and_a_service(rendered):
    _, objects = rendered
    budgets = by_kind(objects, "PodDisruptionBudget")
    services = by_kind(objects, "Service")
    for name, deployment in by_kind(objects, "Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert any(b["spec"]["selector"]["matchLabels"] == selector for b in budgets.values()), name
        assert any(s["spec"]["selector"] == selector for s in services.values()), name


def test_services_expose_metrics_on_the_documented_ports(rendered):
    _, objects = rendered
    from common.config import Settings

    settings = Settings.load({})
    services = by_kind(objects, "Service")
    for name in SERVICES:
        ports = {p["name"]: p["port"] for p in services[name]["spec"]["ports"]}
        assert ports["metrics"] == getattr(settings, f"{name}_metrics_port"), name


def test_smtp_is_a_load_balancer_on_25_and_587_and_the_webmail_an_ingress_with_tls(rendered):
    _, objects = rendered
    smtp = by_kind(objects, "Service")["smtp"]
    assert smtp["spec"]["type"] == "LoadBalancer"
    assert {(p["port"], p["targetPort"]) for p in smtp["spec"]["ports"]} == {
        (25, "smtp-mx"),
        (587, "smtp-submission"),
    }
    ingress = by_kind(objects, "Ingress")["webmail"]
    assert ingress["spec"]["tls"][0]["secretName"]
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"] for rule in ingress["spec"]["rules"]]


def test_referenced_configmaps_and_secrets_exist_or_are_documented(rendered):
    overlay, objects = rendered
    configmaps = set(by_kind(objects, "ConfigMap"))
    secrets = set(by_kind(objects, "Secret"))
    if overlay == "prod":
        assert not secrets, "production secrets are created by the operators, never rendered"
        secrets = EXTERNAL_SECRETS
    text = yaml.safe_dump_all(objects)
    for ref in re.findall(r"configMapRef:\s+name: (\S+)", text) + re.findall(
        r"configMap:\s+name: (\S+)", text
    ):
        assert ref in configmaps, ref
    for obj in objects:
        for ref in _secret_names(obj):
            assert ref in secrets, f"{overlay}: {obj['kind']}/{obj['metadata']['name']} needs Secret {ref}"


def _secret_names(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"secretKeyRef", "secretRef"} and isinstance(value, dict):
                found.append(value["name"])
            elif key == "secret" and isinstance(value, dict) and "secretName" in value:
                found.append(value["secretName"])
            elif key == "secretTargetRef":
                found += [item["name"] for item in value]
            elif key == "passwordSecretRef":
                found.append(value["name"])
            else:
                found += _secret_names(value)
    elif isinstance(node, list):
        for item in node:
            found += _secret_names(item)
    return found


def test_network_policies_deny_by_default_and_cover_every_component(rendered):
    _, objects = rendered
    policies = by_kind(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    for name in (*SERVICES, "clamd", "rabbitmq", "mongodb"):
        assert name in policies, name
    scan_egress = {port["port"] for rule in policies["scan"]["spec"]["egress"] for port in rule["ports"]}
    assert scan_egress == {5672, 27017, 3310}


def test_infrastructure_is_highly_available_in_production():
    objects = render("prod")
    rabbit = by_kind(objects, "RabbitmqCluster")["rabbitmq"]["spec"]
    assert rabbit["replicas"] == 3
    assert "default_queue_type = quorum" in rabbit["rabbitmq"]["additionalConfig"]
    assert by_kind(objects, "MongoDBCommunity")["mongodb"]["spec"]["members"] == 3
    clamd = by_kind(objects, "Deployment")["clamd"]["spec"]
    assert clamd["replicas"] >= 2
    memory = next(c for c in clamd["template"]["spec"]["containers"] if c["name"] == "clamd")["resources"]
    # The official signature database needs about 1.5 GiB resident.
    assert memory["limits"]["memory"] in {"3Gi", "4Gi"} and memory["requests"]["memory"] in {"2Gi", "3Gi"}
    assert [c["name"] for c in clamd["template"]["spec"]["containers"]] == ["clamd", "freshclam"]


def bench_threshold() -> int:
    spec = importlib.util.spec_from_file_location("bench_peak", ROOT / "bench" / "bench_peak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.keda_scan_threshold()


def test_pipeline_stages_autoscale_on_their_queue_with_a_cpu_fallback():
    prod = render("prod")
    scaled = by_kind(prod, "ScaledObject")
    assert set(scaled) == set(AUTOSCALED)
    assert not by_kind(prod, "HorizontalPodAutoscaler"), "KEDA owns the HPAs in prod"
    for name, obj in scaled.items():
        triggers = {t["type"]: t for t in obj["spec"]["triggers"]}
        assert triggers["rabbitmq"]["metadata"]["queueName"].startswith(f"{name}.mail.")
        assert triggers["cpu"]["metricType"] == "Utilization"
        assert obj["spec"]["fallback"]["replicas"] >= obj["spec"]["minReplicaCount"]
        # Autoscaled Deployments leave `replicas` to the autoscaler.
        assert "replicas" not in by_kind(prod, "Deployment")[name]["spec"]
    scan = {t["type"]: t for t in scaled["scan"]["spec"]["triggers"]}["rabbitmq"]["metadata"]
    assert scan["queueName"] == "scan.mail.received"
    # The peak simulation uses the very threshold the cluster uses.
    assert int(scan["value"]) == bench_threshold()
    dev_hpas = by_kind(render("dev"), "HorizontalPodAutoscaler")
    assert set(dev_hpas) == set(AUTOSCALED)


def test_dashboards_are_shipped_as_a_configmap_for_grafana(rendered):
    _, objects = rendered
    dashboards = by_kind(objects, "ConfigMap")["webmail-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted(p.name for p in (DEPLOY / "base" / "monitoring" / "dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == files


def test_dockerfiles_are_pinned_and_run_as_non_root():
    for path in sorted((DEPLOY / "docker").glob("*Dockerfile")):
        text = path.read_text()
        froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
        args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
        for image in froms:
            image = args.get(image.strip("${}"), image)
            if image in {"build", "assets"}:
                continue
            assert re.search(r":[0-9][\w.-]*$", image), f"{path.name}: {image} is not pinned to a version"
        users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
        assert users and not users[-1].startswith(("0", "root")), f"{path.name} must end as a non-root user"
        assert re.match(r"^\d+(:\d+)?$", users[-1]), (
            f"{path.name}: numeric USER, so runAsNonRoot can check it"
        )
    app = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "pip install -c constraints.txt ." in app
    assert "grpc_tools.protoc" in app, "stubs are generated at build time"
    assert "npm ci" in app and "WEBMAIL_ASSETS_DIR=" in app, "the DSFR and htmx are in the image"


def test_package_data_covers_every_file_the_services_read():
    """`pip install .` (the image) copies only the package data listed in pyproject.toml besides code."""
    import fnmatch
    import tomllib

    ROOT = DEPLOY.parent
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package_dir in sorted((ROOT / "services").glob("*/*/__init__.py")):
        package = package_dir.parent
        patterns = package_data.get(package.name, [])
        for path in sorted(package.rglob("*")):
            relative = path.relative_to(package).as_posix()
            if path.is_dir() or path.suffix in (".py", ".pyc", ".pyi") or "__pycache__" in relative:
                continue
            if relative.startswith("protos/"):
                continue  # generated at build time
            assert any(fnmatch.fnmatch(relative, pattern.replace("**/", "*")) for pattern in patterns), (
                f"{package.name}/{relative} is not in [tool.setuptools.package-data]"
            )


def test_entrypoint_runs_each_service():
    entrypoint = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    for name in SERVICES:
        assert re.search(rf"\b{name}\b", entrypoint.split("case", 1)[1]), name


def test_service_monitors_select_services_with_their_port(rendered):
    _, objects = rendered
    services = by_kind(objects, "Service")
    monitor = by_kind(objects, "ServiceMonitor")["webmail-services"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in services.values() if wanted.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in selected} == set(SERVICES)
    port = monitor["spec"]["endpoints"][0]["port"]
    assert all(port in {p["name"] for p in s["spec"]["ports"]} for s in selected)


def test_every_pod_has_a_policy_of_its_own(rendered):
    _, objects = rendered
    selectors = [
        p["spec"]["podSelector"].get("matchLabels", {})
        for p in by_kind(objects, "NetworkPolicy").values()
        if p["spec"]["podSelector"]
    ]
    for name, deployment in by_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(s.items() <= labels.items() for s in selectors), f"no NetworkPolicy selects {name}"
