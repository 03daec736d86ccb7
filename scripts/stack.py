"""Starts, checks and stops the platform on one machine: infrastructure and services.

    python scripts/stack.py up          infrastructure, every service that exists, local Prometheus, demo data
    python scripts/stack.py infra       infrastructure only (RabbitMQ, clamd, the database)
    python scripts/stack.py status      what runs where
    python scripts/stack.py stop        stop what this script started (by the pids it recorded)
    python scripts/stack.py run -- CMD  start what is missing, run CMD, stop only what was started for it

Everything is idempotent: a component that already answers its health check (AMQP connect, clamd PING,
database ping, service /healthz) is reused, never started twice. Logs go to var/log/, pids to var/run/,
data to var/data/ (STATE_DIR). When MONGODB_URL is set in the environment, that database is used and no
FerretDB is started.
"""

from __future__ import annotations

import argparse
import binascii
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "common"))

from common.config import Settings  # noqa: E402

SETTINGS = Settings.load()
VAR = SETTINGS.state_path
LOG = VAR / "log"
RUN = VAR / "run"
DATA = VAR / "data"
BIN = VAR / "bin"
PYTHON = sys.executable

TESTFILES = Path("/usr/share/clamav-testfiles")


def say(message: str) -> None:
    print(message, flush=True)


# --- processes --------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def read_pid(name: str) -> int | None:
    path = RUN / f"{name}.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Start `cmd` in its own session, output to var/log/<name>.log, pid to var/run/<name>.pid."""
    LOG.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    logfile = open(LOG / f"{name}.log", "ab")
    proc = subprocess.Popen(
        cmd,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    logfile.close()
    (RUN / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the process group recorded for `name`, SIGKILL it after `timeout`; True if one ran."""
    path = RUN / f"{name}.pid"
    pid = read_pid(name)
    path.unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def wait_for(what: str, check: Callable[[], bool], timeout: float, name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if name and read_pid(name) is None:
            tail = tail_log(name)
            raise SystemExit(f"{what} exited during start-up; end of var/log/{name}.log:\n{tail}")
        time.sleep(0.5)
    raise SystemExit(f"{what} did not become healthy within {timeout:.0f}s; see var/log/{name or what}.log")


def tail_log(name: str, lines: int = 25) -> str:
    try:
        return "\n".join((LOG / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


# --- components -------------------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    address: str
    healthy: Callable[[], bool]
    start: Callable[[], None]
    timeout: float = 90.0


def amqp_healthy() -> bool:
    from kombu import Connection

    try:
        with Connection(SETTINGS.amqp_url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy yet"
        return False


def start_rabbitmq() -> None:
    url = urlsplit(SETTINGS.amqp_url)
    host, port = url.hostname or "127.0.0.1", url.port or 5672
    if host not in {"127.0.0.1", "localhost"}:
        raise SystemExit(f"RabbitMQ at {host} is not answering, and only a local one can be started")
    server = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if not server.exists():
        raise SystemExit("rabbitmq-server is not installed: run `make bootstrap`")
    base = DATA / "rabbitmq"
    base.mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq.conf").write_text(
        "\n".join(
            [
                f"listeners.tcp.default = 127.0.0.1:{port}",
                "management.tcp.ip = 127.0.0.1",
                "management.tcp.port = 15672",
                "prometheus.tcp.ip = 127.0.0.1",
                "prometheus.tcp.port = 15692",
                "disk_free_limit.absolute = 256MB",
                "log.console = true",
                "log.console.level = warning",
                "log.file = false",
                "",
            ]
        )
    )
    (base / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")
    epmd_was_running = port_open("127.0.0.1", 4369)
    spawn(
        "rabbitmq",
        [str(server)],
        env={
            "HOME": str(base),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": "webmail@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(port + 20000),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(LOG),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(RUN / "rabbitmq-beam.pid"),
        },
    )
    if not epmd_was_running:
        (RUN / "epmd.started").write_text("epmd was started with RabbitMQ\n")


EICAR_PARTS = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$", b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


def build_signatures(db_dir: Path) -> None:
    """The project's signature database: EICAR as a body signature, Debian's test files as MD5 hashes."""
    db_dir.mkdir(parents=True, exist_ok=True)
    eicar_hex = binascii.hexlify(b"".join(EICAR_PARTS)).decode()
    ndb = f"Webmail.Test.EICAR:0:*:{eicar_hex}\n"
    if not (db_dir / "webmail.ndb").exists() or (db_dir / "webmail.ndb").read_text() != ndb:
        (db_dir / "webmail.ndb").write_text(ndb)
    hdb_path = db_dir / "webmail.hdb"
    if hdb_path.exists():
        return
    if not TESTFILES.is_dir():
        raise SystemExit("Debian's clamav-testfiles are missing: run `make bootstrap`")
    lines = []
    for path in sorted(TESTFILES.iterdir()):
        if not path.is_file():
            continue
        out = subprocess.run(["sigtool", "--md5", str(path)], capture_output=True, text=True, check=True)
        digest, size, _name = out.stdout.strip().split(":", 2)
        lines.append(f"{digest}:{size}:Webmail.Test.{path.name}\n")
    hdb_path.write_text("".join(lines))


def scan_clamd_socket() -> str:
    """CLAMD_SOCKET for scan next to our own clamd ("" for TCP): `scan.clamd.local_socket`."""
    from scan.clamd import local_socket

    return local_socket(SETTINGS)


def clamd_healthy() -> bool:
    try:
        import pyclamd

        return bool(pyclamd.ClamdNetworkSocket(SETTINGS.clamd_host, SETTINGS.clamd_port, timeout=2).ping())
    except Exception:  # noqa: BLE001
        return False


def clamd_scratch_folder(base: Path) -> Path:
    """Where clamd writes each stream it scans (and what it unpacks from it): a folder in memory.

    clamd stores every INSTREAM in a temporary file before scanning it; on a memory file system
    (/dev/shm) instead of the disk, its CPU per 4 KB message falls by about 40 % (BENCHMARKS.md). The
    files live only for the duration of one scan. Falls back to `base`/tmp where /dev/shm is missing.
    """
    shm = Path("/dev/shm")  # noqa: S108 - a folder of our own in it, mode 0700, checked below
    if shm.is_dir():
        folder = shm / f"webmail-clamd-{os.getuid()}"
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        info = folder.lstat()
        if (
            folder.is_dir()
            and not folder.is_symlink()
            and info.st_uid == os.getuid()
            and not info.st_mode & 0o077
        ):
            return folder
    folder = base / "tmp"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def start_clamd() -> None:
    if SETTINGS.clamd_host not in {"127.0.0.1", "localhost"}:
        raise SystemExit(
            f"clamd at {SETTINGS.clamd_host} is not answering, and only a local one can be started"
        )
    if not shutil.which("clamd") and not Path("/usr/sbin/clamd").exists():
        raise SystemExit("clamd is not installed: run `make bootstrap`")
    base = DATA / "clamav"
    build_signatures(base / "db")
    scratch = clamd_scratch_folder(base)
    conf = base / "clamd.conf"
    conf.write_text(
        "\n".join(
            [
                "# Generated by scripts/stack.py: the project's clamd for development and CI.",
                "Foreground yes",
                f"DatabaseDirectory {base / 'db'}",
                f"TemporaryDirectory {scratch}",
                f"LocalSocket {SETTINGS.local_clamd_socket}",
                "LocalSocketMode 660",
                f"TCPSocket {SETTINGS.clamd_port}",
                f"TCPAddr {SETTINGS.clamd_host}",
                "LogTime yes",
                "LogVerbose no",
                "MaxThreads 8",
                "MaxConnectionQueueLength 30",
                "StreamMaxLength 60M",
                "MaxScanSize 150M",
                "MaxFileSize 60M",
                "MaxRecursion 16",
                "MaxFiles 10000",
                "MaxScanTime 60000",
                "ScanMail yes",
                "ScanArchive yes",
                "ScanPE yes",
                "ScanOLE2 yes",
                "ScanPDF yes",
                "ScanHTML yes",
                # Flag, never pass, what cannot be scanned completely.
                "AlertExceedsMax yes",
                "AlertEncrypted yes",
                "AlertEncryptedArchive yes",
                "AlertEncryptedDoc yes",
                "AlertBrokenExecutables yes",
                "AlertOLE2Macros no",
                "Bytecode yes",
                "SelfCheck 600",
                "",
            ]
        )
    )
    spawn("clamd", ["clamd", f"--config-file={conf}"])


def database_healthy() -> bool:
    import pymongo

    try:
        client = pymongo.MongoClient(
            SETTINGS.mongodb_url, serverSelectionTimeoutMS=1500, connectTimeoutMS=1500
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
        return True
    except Exception:  # noqa: BLE001
        return False


#: FerretDB's module, pinned in tools/ferretdb/go.mod.
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
#: Patches applied to FerretDB's source before it is built (`git apply`, paths relative to the module).
#: `exact-pushdown.patch`: queries with the pushdown comment run whole in SQLite on the indexes, secondary
#: indexes are built on fields' SQL values, and `_id` lookups filter on the `_id` index's own expression
#: (upstream filters on `->'$._id'` but indexes `->"_id"`, so every `_id` lookup scanned its table).
#: docs/ARCHITECTURE.md ("Indexed queries") says what it changes.
#: `read-speedup.patch` (applied after it): stored documents are decoded without a JSON decoder per value
#: and binary fields without rescanning their base64, and in-memory document and array iterators are no
#: longer leak-tracked (a stack trace recorded per iterator): about 40 % less CPU per document read, the
#: replies byte for byte the same (docs/ARCHITECTURE.md, "FerretDB's read path").
#: `update-closes-rows.patch`: an update command closes each statement's rows when that statement is done,
#: not at the end of the command (upstream deadlocks on an update command of over 100 matching
#: `update_one` statements: each kept a connection of the SQLite pool).
#: `cpu-speedup.patch` (applied last): the garbage collector runs when the heap has grown by 400 % instead
#: of 100 % unless GOGC is set (the live heap is a few MB and every document read or written allocates
#: several copies of itself: the collector took about a third of the CPU, for some 20 MB more memory now),
#: SQL statements' arguments are formatted for the debug log only when it is on (each insert formatted its
#: documents' whole JSON), and documents' decoded schemas are cached by their JSON text: about 40 % less
#: FerretDB CPU per message in `bench/bench_ferretdb_mix.py`, the replies byte for byte the same.
#: `one-pass-read.patch` (applied after it): stored documents, their nested documents and arrays are split
#: into their members in one pass instead of three scans by `encoding/json`, and plain strings are read
#: without a decoder (anything else goes to the decoders as before): about 40 % less CPU per document
#: read, the replies byte for byte the same.
#: `insert-without-transaction.patch`: an insert of up to 100 documents (one SQL statement) runs without
#: an explicit transaction, so SQLite keeps no statement journal (a copy of each page it changes, each
#: index's included, only to undo that statement inside a larger transaction); larger ones as before.
FERRETDB_PATCHES = (
    ROOT / "tools" / "ferretdb" / "exact-pushdown.patch",
    ROOT / "tools" / "ferretdb" / "read-speedup.patch",
    ROOT / "tools" / "ferretdb" / "update-closes-rows.patch",
    ROOT / "tools" / "ferretdb" / "cpu-speedup.patch",
    ROOT / "tools" / "ferretdb" / "one-pass-read.patch",
    ROOT / "tools" / "ferretdb" / "insert-without-transaction.patch",
)
#: FerretDB's packages whose tests run on the patched copy before each build (one-pass-read.patch adds
#: `split_test.go` there; FerretDB's own tests of its stored JSON format run with it): a failure stops
#: the build.
FERRETDB_PATCH_TESTS = ("./internal/handler/sjson/",)
#: The C library that FerretDB's SQLite (translated to Go) runs on, pinned in tools/ferretdb/go.mod.
LIBC_MODULE = "modernc.org/libc"
#: `libc-memory.patch`: its memcpy, memmove, memset and memcmp (linux/amd64) are Go's copy, fill and
#: bytes.Compare; the translated C moved or compared one to four bytes at a time, and SQLite compared each
#: stored document's whole JSON text byte by byte to find its parse in its cache, once per indexed
#: expression.
LIBC_PATCHES = (ROOT / "tools" / "ferretdb" / "libc-memory.patch",)


def ferretdb_stamp(source: Path) -> str:
    """What the FerretDB build depends on: the launcher's module and sources, and the patches."""
    digest = hashlib.sha256()
    for path in sorted(
        [source / "go.mod", source / "go.sum", *source.glob("*.go"), *FERRETDB_PATCHES, *LIBC_PATCHES]
    ):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ferretdb_binary() -> Path:
    """The project-local FerretDB, built from tools/ferretdb (pinned v1.24.2, patched) when missing.

    FerretDB's module and the C library module its SQLite runs on are copied out of the Go module cache,
    their patches (`FERRETDB_PATCHES`, `LIBC_PATCHES`) are applied to the copies, `FERRETDB_PATCH_TESTS`
    run on them, and the launcher is built against them through a temporary Go workspace (go.work), which
    replaces each pinned module by its patched copy of the same version.
    """
    binary = BIN / "ferretdb"
    source = ROOT / "tools" / "ferretdb"
    stamp = ferretdb_stamp(source)
    stamp_file = BIN / "ferretdb.stamp"
    if binary.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return binary
    if not shutil.which("go"):
        raise SystemExit("Go is needed to build FerretDB (or set MONGODB_URL to an existing MongoDB)")
    say("building FerretDB v1.24.2 (first run only; a few minutes)…")
    BIN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ferretdb-build-") as tmp:
        ferretdb = patched_module_copy(source, FERRETDB_MODULE, FERRETDB_PATCHES, Path(tmp) / "ferretdb")
        libc = patched_module_copy(source, LIBC_MODULE, LIBC_PATCHES, Path(tmp) / "libc")
        workspace = Path(tmp) / "go.work"
        uses = "".join(f"\t{path}\n" for path in (source, ferretdb, libc))
        workspace.write_text(f"go 1.24\n\nuse (\n{uses})\n")
        env = {**os.environ, "GOWORK": str(workspace)}
        (ferretdb / ".git").mkdir()  # FerretDB's test helpers find the module's root by its .git
        tested = subprocess.run(
            ["go", "test", "-count=1", *FERRETDB_PATCH_TESTS],
            cwd=ferretdb,
            env=env,
            capture_output=True,
            text=True,
        )
        if tested.returncode != 0:
            raise SystemExit(f"the patched FerretDB fails its tests:\n{tested.stdout}{tested.stderr}")
        built = BIN / "ferretdb.new"
        subprocess.run(["go", "build", "-o", str(built), "."], cwd=source, check=True, env=env)
    built.replace(binary)  # a running FerretDB keeps its (old) file
    stamp_file.write_text(stamp)
    return binary


def patched_module_copy(source: Path, module: str, patches: tuple[Path, ...], copy: Path) -> Path:
    """A writable copy at `copy` of `module` (the version source/go.mod pins), with `patches` applied."""
    subprocess.run(["go", "mod", "download", module], cwd=source, check=True)
    cached = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", module],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    shutil.copytree(cached, copy)  # the module cache is read-only; copies are made writable below
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    for patch in patches:
        applied = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", str(patch)], cwd=copy, capture_output=True, text=True
        )
        if applied.returncode != 0:
            raise SystemExit(f"cannot patch {module} with {patch.name}: {applied.stderr.strip()}")
    return copy


def start_ferretdb() -> None:
    if "MONGODB_URL" in os.environ:
        raise SystemExit(f"the database at MONGODB_URL={SETTINGS.mongodb_url} is not answering")
    url = urlsplit(SETTINGS.mongodb_url)
    data = DATA / "ferretdb"
    data.mkdir(parents=True, exist_ok=True)
    spawn(
        "ferretdb",
        [
            str(ferretdb_binary()),
            f"--listen-addr={url.hostname or '127.0.0.1'}:{url.port or 27017}",
            f"--sqlite-url=file:{data}/",
            "--log-level=error",
        ],
    )


INFRA = [
    Component("rabbitmq", SETTINGS.amqp_url.split("@")[-1], amqp_healthy, start_rabbitmq, timeout=120),
    Component(
        "clamd", f"{SETTINGS.clamd_host}:{SETTINGS.clamd_port}", clamd_healthy, start_clamd, timeout=120
    ),
    Component("database", SETTINGS.mongodb_url, database_healthy, start_ferretdb, timeout=60),
]


# --- services ---------------------------------------------------------------------------------------------

#: (service, metrics port). Order matters: the directory first (others call it), the webmail last.
SERVICES = [
    ("directory", SETTINGS.directory_metrics_port),
    ("scan", SETTINGS.scan_metrics_port),
    ("spam", SETTINGS.spam_metrics_port),
    ("delivery", SETTINGS.delivery_metrics_port),
    ("notify", SETTINGS.notify_metrics_port),
    ("ingest", SETTINGS.ingest_metrics_port),
    ("webmail", SETTINGS.webmail_metrics_port),
]


def existing_services() -> list[tuple[str, int]]:
    """Services whose package can be run (`python -m <service>`)."""
    return [
        (name, port) for name, port in SERVICES if (ROOT / "services" / name / name / "__main__.py").exists()
    ]


def http_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{SETTINGS.metrics_host}:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_infra() -> list[str]:
    """Start what is missing; returns the names of the components started now."""
    started = []
    for component in INFRA:
        if component.healthy():
            say(f"  {component.name:<10} reused     {component.address}")
            continue
        pid_name = "ferretdb" if component.name == "database" else component.name
        if read_pid(pid_name) is None:
            component.start()
            started.append(pid_name)
        wait_for(component.name, component.healthy, component.timeout, pid_name)
        say(f"  {component.name:<10} started    {component.address}")
    return started


def submission_service_secret() -> str:
    """The secret the webmail logs in to ingest's submission port with (SUBMISSION_SERVICE_SECRET).

    Taken from the environment when set; otherwise generated once into var/data (mode 600) and reused,
    so that ingest and the webmail, started separately, always share the same one.
    """
    if os.environ.get("SUBMISSION_SERVICE_SECRET"):
        return os.environ["SUBMISSION_SERVICE_SECRET"]
    path = DATA / "submission-service.secret"
    if not path.exists():
        import secrets

        DATA.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def start_services() -> list[str]:
    started = []
    env = {"SUBMISSION_SERVICE_SECRET": submission_service_secret()}
    socket_path = scan_clamd_socket()
    if socket_path:
        # Our own clamd: scan talks to it over its local socket (half the CPU of a TCP connection).
        env["CLAMD_SOCKET"] = socket_path
    for name, port in existing_services():
        if http_healthy(port):
            say(f"  {name:<10} reused     metrics http://{SETTINGS.metrics_host}:{port}")
            continue
        if read_pid(name) is None:
            spawn(name, [PYTHON, "-m", name], env)
            started.append(name)
        wait_for(f"service {name}", lambda port=port: http_healthy(port), 90, name)
        say(f"  {name:<10} started    metrics http://{SETTINGS.metrics_host}:{port}")
    return started


def seed_demo() -> None:
    """Create the synthetic academy and the demo accounts (idempotent), and print them."""
    if (ROOT / "services" / "directory" / "directory" / "admin.py").exists():
        subprocess.run([PYTHON, "-m", "directory.admin", "seed-demo"], cwd=ROOT, check=True)
    if any(name == "ingest" for name, _ in existing_services()):
        subprocess.run([PYTHON, str(ROOT / "scripts" / "demo_mail.py")], cwd=ROOT, check=False)


# --- local Prometheus (make run) --------------------------------------------------------------------------
# Debian's `prometheus`, scraping every running service's /metrics and RabbitMQ's per-queue metrics, with
# the platform's recording and alerting rules (the `spec` of deploy/base/monitoring/prometheusrule.yaml,
# the same rules the cluster's Prometheus Operator loads). Its configuration is generated at each start.

PROMETHEUS_PORT = 9090
PROMETHEUS_RULES = ROOT / "deploy" / "base" / "monitoring" / "prometheusrule.yaml"
RABBITMQ_METRICS_PORT = 15692


def prometheus_config(
    targets: list[tuple[str, str]], rabbitmq: str | None, rule_files: list[str], interval: str = "5s"
) -> dict:
    """A Prometheus configuration: one job per (service, host:port) and one for RabbitMQ's plugin.

    Job names are the service names, as the ServiceMonitor's jobLabel gives in the cluster, so the rules
    and dashboards work unchanged on both.
    """
    jobs = [
        {"job_name": name, "static_configs": [{"targets": [address]}], "metrics_path": "/metrics"}
        for name, address in targets
    ]
    if rabbitmq:
        # /metrics/per-object: one series per queue (the aggregated /metrics has no queue label).
        jobs.append(
            {
                "job_name": "rabbitmq",
                "static_configs": [{"targets": [rabbitmq]}],
                "metrics_path": "/metrics/per-object",
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": "4s"},
        "rule_files": rule_files,
        "scrape_configs": jobs,
    }


def write_prometheus_files(directory: Path, targets: list[tuple[str, str]], rabbitmq: str | None) -> Path:
    """Write prometheus.yml and rules.yml into `directory`; returns the configuration's path."""
    import json

    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    rules = yaml.safe_load(PROMETHEUS_RULES.read_text())["spec"]
    (directory / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = prometheus_config(targets, rabbitmq, [str(directory / "rules.yml")])
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


def prometheus_command(config: Path, data: Path, port: int) -> list[str]:
    """The command line of a Prometheus server on 127.0.0.1:`port` keeping its data in `data`."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=7d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]


def prometheus_ready(port: int = PROMETHEUS_PORT) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def local_prometheus_files() -> Path:
    """(Re)generate the local Prometheus configuration for the services that exist now."""
    rabbit_host = urlsplit(SETTINGS.amqp_url).hostname or "127.0.0.1"
    targets = [(name, f"{SETTINGS.metrics_host}:{port}") for name, port in existing_services()]
    return write_prometheus_files(DATA / "prometheus", targets, f"{rabbit_host}:{RABBITMQ_METRICS_PORT}")


def start_prometheus() -> None:
    if not shutil.which("prometheus") and not Path("/usr/bin/prometheus").exists():
        raise SystemExit("prometheus is not installed: run `make bootstrap`")
    config = local_prometheus_files()
    spawn("prometheus", prometheus_command(config, DATA / "prometheus" / "tsdb", PROMETHEUS_PORT))


PROMETHEUS = Component(
    "prometheus", f"http://127.0.0.1:{PROMETHEUS_PORT}", prometheus_ready, start_prometheus, timeout=60
)


def start_monitoring() -> list[str]:
    """Start the local Prometheus if none answers; reload ours when the set of services changed."""
    if PROMETHEUS.healthy():
        pid = read_pid("prometheus")
        if pid is not None:  # ours: pick up services that appeared since it started
            local_prometheus_files()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
        say(f"  {PROMETHEUS.name:<10} reused     {PROMETHEUS.address}")
        return []
    started = []
    if read_pid("prometheus") is None:
        PROMETHEUS.start()
        started.append("prometheus")
    wait_for(PROMETHEUS.name, PROMETHEUS.healthy, PROMETHEUS.timeout, "prometheus")
    say(f"  {PROMETHEUS.name:<10} started    {PROMETHEUS.address}")
    return started


# --- end of local Prometheus --------------------------------------------------------------------------------


def status() -> int:
    rows = []
    for component in INFRA:
        pid_name = "ferretdb" if component.name == "database" else component.name
        pid = read_pid(pid_name)
        state = "healthy" if component.healthy() else "down"
        rows.append((component.name, state, str(pid or "-"), component.address))
    for name, port in existing_services():
        pid = read_pid(name)
        state = "healthy" if http_healthy(port) else "down"
        rows.append((name, state, str(pid or "-"), f"http://{SETTINGS.metrics_host}:{port}/metrics"))
    rows.append(
        (
            PROMETHEUS.name,
            "healthy" if PROMETHEUS.healthy() else "down",
            str(read_pid("prometheus") or "-"),
            PROMETHEUS.address,
        )
    )
    say(f"{'component':<11}{'state':<9}{'pid':<9}address")
    for row in rows:
        say(f"{row[0]:<11}{row[1]:<9}{row[2]:<9}{row[3]}")
    say(f"logs: {LOG}")
    return 0 if all(row[1] == "healthy" for row in rows) else 1


def endpoints() -> None:
    say("")
    say("What runs where:")
    say(f"  SMTP (MX)           {SETTINGS.smtp_host}:{SETTINGS.smtp_mx_port}")
    say(f"  SMTP (submission)   {SETTINGS.smtp_host}:{SETTINGS.smtp_submission_port}")
    if any(name == "webmail" for name, _ in existing_services()):
        say(f"  webmail             {SETTINGS.public_url}")
    say(f"  directory (gRPC)    {SETTINGS.directory_address}")
    say(f"  RabbitMQ            {SETTINGS.amqp_url.split('@')[-1]}  (management http://127.0.0.1:15672)")
    socket_path = SETTINGS.clamd_socket or scan_clamd_socket()
    local = f"  (scan: {socket_path})" if socket_path else ""
    say(f"  clamd               {SETTINGS.clamd_host}:{SETTINGS.clamd_port}{local}")
    say(f"  database            {SETTINGS.mongodb_url}")
    for name, port in existing_services():
        say(f"  {name:<19} http://{SETTINGS.metrics_host}:{port}/metrics  /healthz")
    say(f"  Prometheus          {PROMETHEUS.address}  (rules: deploy/base/monitoring/prometheusrule.yaml)")
    say(f"  logs                {LOG}/")
    say("Stop everything with `make stop`.")


def stop(names: list[str] | None = None) -> None:
    """Stop services then infrastructure (only those this script started)."""
    order = ["prometheus"] + [name for name, _ in reversed(SERVICES)] + ["ferretdb", "clamd", "rabbitmq"]
    for name in order:
        if names is not None and name not in names:
            continue
        if stop_pid(name):
            say(f"  stopped {name}")
    if (names is None or "rabbitmq" in names) and (RUN / "epmd.started").exists():
        subprocess.run(["epmd", "-kill"], capture_output=True, check=False)
        (RUN / "epmd.started").unlink(missing_ok=True)
        say("  stopped epmd")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "infra", "status", "stop", "run"])
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "infra":
        say("Infrastructure:")
        start_infra()
        return 0
    if args.command == "up":
        say("Infrastructure:")
        start_infra()
        say("Services:")
        start_services()
        say("Monitoring:")
        start_monitoring()
        seed_demo()
        endpoints()
        return 0
    if args.command == "status":
        return status()
    if args.command == "stop":
        stop()
        return 0
    # run: infrastructure for a command (the test suite), stopped afterwards if it was started for it.
    cmd = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if not cmd:
        parser.error("run needs a command after --")
    say("Infrastructure:")
    started = start_infra()
    try:
        return subprocess.call(cmd, cwd=ROOT)
    finally:
        if started and os.environ.get("KEEP_INFRA") != "1":
            say("Stopping the infrastructure started for this run:")
            stop(started)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
