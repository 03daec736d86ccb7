"""Nothing lost, nothing doubled: a run of mail through the whole platform while its parts crash.

Senders behave like real MTAs: a message is retried on a temporary failure (4xx, a broken connection)
until it gets 250. Meanwhile ingest, scan, spam and delivery are killed with SIGKILL and restarted, clamd
is stopped for a while, and RabbitMQ and the database are restarted (when this run started them). At the
end every message that got 250 must be in each of its recipients' mailboxes exactly once, counted by
Message-ID per recipient.

FAULT_MESSAGES sets the size of the run (default 2,000).
"""

from __future__ import annotations

import os
import random
import re
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from common.config import get_settings
from tests.helpers import ROOT, free_port, wait_until
from tests.platform import running_platform

sys.path.insert(0, str(ROOT / "scripts"))
import stack

DOMAIN = get_settings().mail_domain
PEOPLE = [("Martin", "Camille"), ("Garcia", "Louis"), ("Bernard", "Inès"), ("Roux", "Céline")]
MESSAGES = int(os.environ.get("FAULT_MESSAGES", "2000"))
SENDERS = 10


class PrivateClamd:
    """A clamd of the test's own (the project's configuration and signatures), which it may stop."""

    def __init__(self, folder: Path):
        self.port = free_port()
        conf = (get_settings().state_path / "data" / "clamav" / "clamd.conf").read_text()
        conf = re.sub(r"^TCPSocket .*$", f"TCPSocket {self.port}", conf, flags=re.M)
        conf = re.sub(r"^LocalSocket .*$", f"LocalSocket {folder / 'clamd.sock'}", conf, flags=re.M)
        self.conf = folder / "clamd.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["clamd", f"--config-file={self.conf}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import pyclamd

        def answers() -> bool:
            try:
                return pyclamd.ClamdNetworkSocket("127.0.0.1", self.port, timeout=2).ping()
            except (OSError, pyclamd.ConnectionError):
                return False

        wait_until(answers, timeout=60, what="the private clamd")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


class Senders:
    """SMTP clients that retry temporary failures until 250, recording what was accepted."""

    def __init__(self, port: int, recipients: list[str]):
        self.port, self.recipients = port, recipients
        self.accepted: dict[str, list[str]] = {}
        self.permanent: list[str] = []
        self.retries = 0
        self.lock = threading.Lock()

    def message(self, n: int) -> tuple[str, list[str], bytes]:
        rng = random.Random(n)
        rcpts = rng.sample(self.recipients, rng.choice([1, 1, 2]))
        header = f"<fault-{n}-{uuid.uuid4().hex[:8]}@exemple.org>"
        raw = (
            f"From: Dominique Durand <dominique.durand@exemple.org>\r\nTo: {', '.join(rcpts)}\r\n"
            f"Subject: Message {n}\r\nMessage-ID: {header}\r\n\r\nContenu du message {n}.\r\n"
        ).encode()
        return header, rcpts, raw

    def send_one(self, n: int, deadline: float) -> None:
        header, rcpts, raw = self.message(n)
        pending = list(rcpts)
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as smtp:
                    # Recipients refused with a 4xx while others were accepted are retried later, alone,
                    # as an MTA does; the message is then delivered to them in a second transaction.
                    refused = smtp.sendmail("dominique.durand@exemple.org", pending, raw)
                with self.lock:
                    self.accepted.setdefault(header, [])
                    self.accepted[header] += [r for r in pending if r not in refused]
                if any(code >= 500 for code, _ in refused.values()):
                    self.permanent.append(f"{header}: {refused}")
                    return
                pending = [r for r in pending if r in refused]
                if not pending:
                    return
            except smtplib.SMTPRecipientsRefused as exc:
                codes = {code for code, _ in exc.recipients.values()}
                if all(code >= 500 for code in codes):
                    self.permanent.append(f"{header}: {exc.recipients}")
                    return
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code >= 500:
                    self.permanent.append(f"{header}: {exc.smtp_code} {exc.smtp_error!r}")
                    return
            except (OSError, smtplib.SMTPException):
                pass
            with self.lock:
                self.retries += 1
            time.sleep(0.5)
        self.permanent.append(f"{header}: not accepted before the deadline")

    def run(self, count: int, deadline: float) -> None:
        numbers = list(range(count))

        def worker(share: list[int]) -> None:
            for n in share:
                self.send_one(n, deadline)

        threads = [threading.Thread(target=worker, args=(numbers[i::SENDERS],)) for i in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def restart_stage(platform: dict, name: str, pause: float = 1.0) -> None:
    """kill -9 a service and start it again after `pause` seconds."""
    old = platform["procs"][name]
    old.kill()
    time.sleep(pause)
    new = old.restarted()
    platform["procs"][name] = new
    new.wait_healthy(timeout=120, accept=(200, 503))


def restart_rabbitmq() -> bool:
    if stack.read_pid("rabbitmq") is None:
        return False  # not started by the project: not ours to restart
    stack.stop_pid("rabbitmq")
    stack.start_rabbitmq()
    stack.wait_for("rabbitmq", stack.amqp_healthy, 120, "rabbitmq")
    return True


def restart_database() -> bool:
    if "MONGODB_URL" in os.environ or stack.read_pid("ferretdb") is None:
        return False
    stack.stop_pid("ferretdb")
    time.sleep(1)
    stack.start_ferretdb()
    stack.wait_for("database", stack.database_healthy, 60, "ferretdb")
    return True


@pytest.mark.timeout(2400)
def test_every_accepted_message_is_delivered_exactly_once_despite_crashes(tmp_path):
    clamd = PrivateClamd(tmp_path)
    clamd.start()
    try:
        with running_platform(
            tmp_path, PEOPLE, "Rentree-Scolaire-2026!", CLAMD_PORT=str(clamd.port), SCAN_MAX_ATTEMPTS="60"
        ) as platform:
            recipients = sorted(platform["people"].values())
            senders = Senders(platform["mx"], recipients)
            deadline = time.monotonic() + 1500
            sending = threading.Thread(target=senders.run, args=(MESSAGES, deadline))
            sending.start()
            faults: list[str] = []

            def progressed(fraction: float) -> None:
                wait_until(
                    lambda: len(senders.accepted) >= MESSAGES * fraction or not sending.is_alive(),
                    timeout=900,
                    interval=0.5,
                )

            for fraction, fault in [
                (0.08, "scan"),
                (0.16, "spam"),
                (0.24, "delivery"),
                (0.32, "ingest"),
                (0.40, "clamd"),
                (0.55, "rabbitmq"),
                (0.70, "database"),
                (0.80, "notify"),
            ]:
                progressed(fraction)
                if fault in platform["procs"]:
                    restart_stage(platform, fault)
                    faults.append(f"kill -9 {fault}")
                elif fault == "clamd":
                    clamd.stop()
                    time.sleep(5)
                    clamd.start()
                    faults.append("clamd stopped for 5 s")
                elif fault == "rabbitmq" and restart_rabbitmq():
                    faults.append("RabbitMQ restarted")
                elif fault == "database" and restart_database():
                    faults.append("database restarted")
            sending.join()
            assert not senders.permanent, senders.permanent[:10]
            assert len(senders.accepted) == MESSAGES

            db = platform["db"]
            expected = Counter({(h, r): 1 for h, rcpts in senders.accepted.items() for r in rcpts})

            def delivered() -> Counter:
                return Counter(
                    (e["message_id_header"], e["mailbox"])
                    for e in db.mailbox_entries.find(
                        {"message_id_header": {"$regex": "^<fault-"}}, {"message_id_header": 1, "mailbox": 1}
                    )
                )

            wait_until(
                lambda: set(delivered()) >= set(expected), timeout=900, interval=2, what="every delivery"
            )
            time.sleep(5)  # anything still in flight would be a duplicate
            got = delivered()
            missing = set(expected) - set(got)
            doubled = {key: count for key, count in got.items() if count > 1}
            unexpected = set(got) - set(expected)
            print(f"faults: {faults}; accepted {len(senders.accepted)} after {senders.retries} retries")
            assert not missing, list(missing)[:10]
            assert not doubled, list(doubled.items())[:10]
            assert not unexpected, list(unexpected)[:10]
            assert len(faults) >= 6, faults
    finally:
        clamd.stop()
