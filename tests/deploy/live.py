"""The platform's services as real processes on a private RabbitMQ virtual host, for the monitoring tests.

`live_platform()` creates a virtual host of its own (RabbitMQ management API), so the services it starts
neither consume other tests' events nor lose theirs, starts every service that exists (`python -m
<service>`, metrics on free ports) against a scratch database, drives a little mail through the
pipeline so that labelled metrics have samples, and removes everything afterwards.
"""

from __future__ import annotations

import contextlib
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common.config import get_settings
from tests import vhost
from tests.helpers import ROOT, ServiceProcess, free_port, wait_until

RABBITMQ_METRICS = "127.0.0.1:15692"
#: Start order: the directory first (ingest asks it about recipients).
ORDER = ("directory", "scan", "spam", "delivery", "notify", "ingest", "webmail")

CLEAN_MAIL = (
    b"From: Camille Martin <camille.martin@ac-montpellier.fr>\r\n"
    b"To: Louis Garcia <louis.garcia@ac-montpellier.fr>\r\n"
    b"Subject: Conseil de classe\r\n"
    b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <conseil-de-classe@ac-montpellier.fr>\r\n"
    b"\r\n"
    b"Bonjour,\r\nle conseil de classe aura lieu jeudi.\r\n"
)


def existing_services() -> list[str]:
    """Services whose package can be run today."""
    return [name for name in ORDER if (ROOT / "services" / name / name / "__main__.py").exists()]


@contextlib.contextmanager
def private_vhost(prefix: str = "webmail-test") -> Iterator[str]:
    """A fresh virtual host on the configured broker; yields its AMQP URL, deletes it afterwards."""
    with vhost.private_vhost(get_settings().amqp_url, prefix) as url:
        yield url


@dataclass
class LivePlatform:
    """What `live_platform()` started."""

    amqp_url: str
    vhost: str
    database_name: str
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def metrics(self, service: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[service]}/metrics", timeout=5) as resp:
            return resp.read().decode()


def _install_spam_model(database) -> None:
    """spam needs an active model; a small one is trained in seconds on the cached corpus."""
    from spam.registry import ModelRegistry
    from spam.testing import small_model

    registry = ModelRegistry(database)
    registry.activate(registry.publish(small_model()))


@contextlib.contextmanager
def live_platform(database, tmp_path: Path) -> Iterator[LivePlatform]:
    """Every existing service on a private vhost and `database`, with a little traffic driven through."""
    with private_vhost() as amqp_url:
        platform = LivePlatform(amqp_url, urllib.parse.urlsplit(amqp_url).path.lstrip("/"), database.name)
        names = existing_services()
        if "spam" in names:
            _install_spam_model(database)
        directory_address = f"127.0.0.1:{free_port()}"
        mx_port, submission_port = free_port(), free_port()
        common_env = {
            "AMQP_URL": amqp_url,
            "DATABASE_NAME": database.name,
            "DIRECTORY_ADDRESS": directory_address,
            "SMTP_MX_PORT": str(mx_port),
            "SMTP_SUBMISSION_PORT": str(submission_port),
            "WEBMAIL_PORT": str(free_port()),
            "EVENT_RETRY_DELAYS": "1",
            "SPAM_MODEL_POLL_SECONDS": "1",
        }
        try:
            for name in names:
                port = free_port()
                platform.ports[name] = port
                platform.processes[name] = ServiceProcess(
                    ["-m", name],
                    env={**common_env, f"{name.upper()}_METRICS_PORT": str(port)},
                    health_port=port,
                    log_path=tmp_path / f"{name}.log",
                )
                if name == "directory":  # the others ask it at start or on first use
                    platform.processes[name].wait_healthy(accept=(200, 503))
            for process in platform.processes.values():
                process.wait_healthy(accept=(200, 503))
            _drive_traffic(platform, database, mx_port if "ingest" in names else None)
            yield platform
        finally:
            for process in platform.processes.values():
                process.stop()


def _drive_traffic(platform: LivePlatform, database, mx_port: int | None) -> None:
    """One clean mail through scan (and spam, delivery, notify), one SMTP session, so labels exist."""
    from common.bus import EventPublisher
    from tests.pipeline import store_raw

    publisher = EventPublisher(source="tests", amqp_url=platform.amqp_url)
    try:
        message_id = store_raw(database, CLEAN_MAIL)
        received = {
            "message_id": message_id,
            "sender": "camille.martin@ac-montpellier.fr",
            "recipients": ["louis.garcia@ac-montpellier.fr"],
            "size": len(CLEAN_MAIL),
            "origin": "mx",
        }
        publisher.publish("mail.received", received)
        if "spam" not in platform.processes:  # no classifier: hand delivery its event directly
            classified = {k: v for k, v in received.items() if k != "size"}
            publisher.publish(
                "mail.classified", {**classified, "verdict": "ham", "score": 0.01, "model_version": "none"}
            )
    finally:
        publisher.close()
    if mx_port is not None:
        with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as smtp:
            smtp.ehlo("tests.example")
            smtp.mail("alice@example.org")
            with contextlib.suppress(smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
                smtp.rcpt("personne.inconnue@ac-montpellier.fr")
    if "scan" in platform.processes:
        wait_until(
            lambda: "scan_verdicts_total{" in platform.metrics("scan"), timeout=30, what="a scan verdict"
        )
    if "delivery" in platform.processes:
        wait_until(
            lambda: "delivery_entries_total{" in platform.metrics("delivery"), timeout=30, what="a delivery"
        )


def exported_names(text: str) -> set[str]:
    """Every series name a /metrics page exposes, including a histogram's and a counter's derived names."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in {"histogram", "summary"}:
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
            elif kind == "counter":
                names |= {f"{name.removesuffix('_total')}_total", f"{name.removesuffix('_total')}_created"}
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names
