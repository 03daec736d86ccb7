"""A private Postfix for the benchmarks: Debian's Postfix, configured under var/, delivering to Maildir.

    with PrivatePostfix(STATE_DIR / "bench" / "postfix", ["louis.garcia@ac-montpellier.fr"]) as postfix:
        ... send to 127.0.0.1:postfix.port ...
        postfix.delivered()   # messages in the Maildirs

It has its own `config_directory` and `queue_directory` (under `folder`), listens on a free loopback port
only, and delivers the addresses it is given as virtual mailboxes (the `virtual` delivery agent, one
Maildir per address under `folder/mail`); every other recipient is refused at RCPT time, as ingest
does. It is started and stopped by the benchmark (`postfix -c <its directory> start|stop`); the system's
Postfix (`/etc/postfix`), if any, is never read, configured or started. Debian's package comes from
`scripts/bootstrap.sh bench`, installed with "No configuration".

The configuration is Debian's defaults plus what a private instance needs: no chroot (the chroot would
need copies of /etc files in the queue), no DNS or reverse lookups of the loopback client, no local
delivery, no aliases, and logs in `folder/postfix.log` (`maillog_file`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import free_port

POSTFIX = "/usr/sbin/postfix"
MASTER_PROTO = Path("/etc/postfix/master.cf.proto")


class PostfixUnavailable(RuntimeError):
    """Debian's Postfix is not installed (`scripts/bootstrap.sh bench` installs it)."""


def _master_cf(port: int) -> str:
    """Debian's master.cf with smtpd on 127.0.0.1:`port` only and no service chrooted."""
    lines = []
    for line in MASTER_PROTO.read_text().splitlines():
        fields = line.split()
        if not line or line[0] in "# \t" or len(fields) < 8:
            lines.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = f"127.0.0.1:{port}"
        fields[4] = "n"  # chroot
        lines.append("  ".join(fields))
    return "\n".join(lines) + "\n"


class PrivatePostfix:
    """Debian's Postfix as a private instance under `folder`, for the duration of a `with` block."""

    def __init__(self, folder: Path, mailboxes: list[str], domain: str | None = None):
        if not Path(POSTFIX).exists() or not MASTER_PROTO.exists():
            raise PostfixUnavailable("Postfix is not installed: run `scripts/bootstrap.sh bench`")
        if os.geteuid() != 0:
            raise PostfixUnavailable("a private Postfix needs root (its master drops to the postfix user)")
        self.folder = folder.resolve()
        self.mailboxes = [m.lower() for m in mailboxes]
        self.domain = domain or self.mailboxes[0].rpartition("@")[2]
        self.config = self.folder / "etc"
        self.queue = self.folder / "spool"
        self.data = self.folder / "lib"
        self.mail = self.folder / "mail"
        self.log = self.folder / "postfix.log"
        self.port = free_port()

    def _main_cf(self, owner: pwd.struct_passwd) -> str:
        table = ", ".join(f"{address}={address.partition('@')[0]}/" for address in self.mailboxes)
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": owner.pw_name,
            "setgid_group": "postdrop",
            "myhostname": "postfix.bench.invalid",
            "mydomain": "bench.invalid",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            "alias_maps": "",
            "alias_database": "",
            "local_transport": "error:local delivery is disabled",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            "smtputf8_enable": "no",
            "maillog_file": self.log,
            "maillog_file_prefixes": self.folder,
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": f"inline:{{ {table} }}",
            "virtual_uid_maps": f"static:{owner.pw_uid}",
            "virtual_gid_maps": f"static:{owner.pw_gid}",
            "virtual_minimum_uid": str(owner.pw_uid),
        }
        return "".join(f"{key} = {value}\n" for key, value in settings.items())

    def __enter__(self) -> PrivatePostfix:
        owner = pwd.getpwnam("postfix")
        with contextlib.suppress(FileNotFoundError):
            self._postfix("stop", check=False)  # a previous run interrupted before its stop
        shutil.rmtree(self.folder, ignore_errors=True)
        for directory in (self.config, self.queue, self.data, self.mail):
            directory.mkdir(parents=True, exist_ok=True)
        os.chown(self.data, owner.pw_uid, owner.pw_gid)
        os.chown(self.mail, owner.pw_uid, owner.pw_gid)
        (self.config / "main.cf").write_text(self._main_cf(owner))
        (self.config / "master.cf").write_text(_master_cf(self.port))
        self.log.touch()
        # `check` creates the queue's subdirectories with their owners and modes (post-install).
        self._postfix("check")
        self._postfix("start")
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private Postfix did not listen on {self.port}; see {self.log}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self._postfix("stop", check=False)

    def _postfix(self, command: str, check: bool = True) -> None:
        result = subprocess.run(
            [POSTFIX, "-c", str(self.config), command], capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            # Before its log service runs, postfix(1) reports only to syslog: ask postconf what is wrong.
            problems = subprocess.run(
                ["postconf", "-c", str(self.config), "-n"], capture_output=True, text=True, check=False
            ).stderr.strip()
            raise RuntimeError(f"postfix {command} failed (exit {result.returncode}); {problems or self.log}")

    def delivered(self) -> int:
        """Messages delivered so far: files in the Maildirs' `new` folders."""
        total = 0
        for address in self.mailboxes:
            with contextlib.suppress(FileNotFoundError):
                total += sum(1 for _ in os.scandir(self.mail / address.partition("@")[0] / "new"))
        return total
