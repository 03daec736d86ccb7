"""Configuration of every service, read from environment variables.

This is the one place where the platform's settings are named, defaulted and documented. Each setting is
declared once with `_setting(...)`; `Settings.load()` reads them all from the environment, and
`python -m common.config` prints the table that README.md carries (a test keeps the two in step).
Defaults suit a developer machine: everything on 127.0.0.1, state under the project's `var/` folder.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

#: The project's root folder (the one holding pyproject.toml), used for local state defaults.
PROJECT_ROOT = Path(__file__).resolve().parents[3]


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def _setting(env: str, default: str, doc: str, kind: type = str):
    """Declare a setting: its environment variable, default (as text), description and type."""
    return field(default=None, metadata={"env": env, "default": default, "doc": doc, "kind": kind})


def _parse(kind: type, env: str, raw: str):
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{env}={raw!r}: expected a boolean (true/false)")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env}={raw!r}: expected an integer") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{env}={raw!r}: expected a number") from None
    return raw


_STATE = str(PROJECT_ROOT / "var")


@dataclass(frozen=True)
class Settings:
    """Every setting of the platform. Read it with `Settings.load()` (or `get_settings()`)."""

    # --- identity -------------------------------------------------------------------------------------
    mail_domain: str = _setting("MAIL_DOMAIN", "ac-montpellier.fr", "Mail domain of the academy's staff.")
    academy_name: str = _setting("ACADEMY_NAME", "Académie de Montpellier", "Name shown to users.")
    state_dir: str = _setting("STATE_DIR", "<project>/var", "Local state: logs, pids, data of local servers.")
    log_level: str = _setting("LOG_LEVEL", "INFO", "Log level of every service (DEBUG, INFO, WARNING…).")

    # --- infrastructure -------------------------------------------------------------------------------
    amqp_url: str = _setting("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//", "RabbitMQ connection URL.")
    mongodb_url: str = _setting(
        "MONGODB_URL",
        "mongodb://127.0.0.1:27017/",
        "Database URL. When unset, `make run` starts a local FerretDB on 127.0.0.1:27017.",
    )
    database_name: str = _setting("DATABASE_NAME", "webmail", "Database holding every collection.")
    clamd_host: str = _setting("CLAMD_HOST", "127.0.0.1", "clamd TCP host.")
    clamd_port: int = _setting("CLAMD_PORT", "3310", "clamd TCP port.", int)
    clamd_socket: str = _setting(
        "CLAMD_SOCKET",
        "",
        "clamd's local (Unix) socket, used instead of CLAMD_HOST/CLAMD_PORT when set (clamd on the same "
        "host or in the same pod). `make run` sets it to its own clamd's.",
    )
    clamd_timeout: float = _setting("CLAMD_TIMEOUT", "30", "Seconds to wait for one clamd answer.", float)

    # --- event bus ------------------------------------------------------------------------------------
    max_attempts: int = _setting(
        "EVENT_MAX_ATTEMPTS",
        "5",
        "Attempts of a failing event handler before the event is dead-lettered.",
        int,
    )
    retry_delays: str = _setting(
        "EVENT_RETRY_DELAYS",
        "1,5,30,120,600",
        "Back-off between attempts, in seconds (comma-separated; the last one repeats).",
    )
    publish_timeout: float = _setting(
        "EVENT_PUBLISH_TIMEOUT", "10", "Seconds to wait for the broker to confirm a published event.", float
    )
    worker_count: int = _setting("WORKER_COUNT", "10", "Concurrent handlers per nameko service process.", int)

    # --- network endpoints ----------------------------------------------------------------------------
    smtp_host: str = _setting("SMTP_HOST", "127.0.0.1", "Address the SMTP servers listen on.")
    smtp_mx_port: int = _setting("SMTP_MX_PORT", "2525", "Incoming mail (MX) port; 25 in production.", int)
    smtp_submission_port: int = _setting(
        "SMTP_SUBMISSION_PORT", "2587", "Submission port (STARTTLS + AUTH); 587 in production.", int
    )
    webmail_host: str = _setting("WEBMAIL_HOST", "127.0.0.1", "Address the webmail listens on.")
    webmail_port: int = _setting("WEBMAIL_PORT", "8080", "Webmail HTTP port.", int)
    public_url: str = _setting(
        "PUBLIC_URL", "http://127.0.0.1:8080", "Public URL of the webmail, used to build links in mails."
    )
    directory_address: str = _setting("DIRECTORY_ADDRESS", "127.0.0.1:50051", "Directory gRPC address.")
    metrics_host: str = _setting(
        "METRICS_HOST", "127.0.0.1", "Address the /metrics and /healthz servers bind."
    )
    ingest_metrics_port: int = _setting("INGEST_METRICS_PORT", "9101", "ingest /metrics and /healthz.", int)
    scan_metrics_port: int = _setting("SCAN_METRICS_PORT", "9102", "scan /metrics and /healthz.", int)
    spam_metrics_port: int = _setting("SPAM_METRICS_PORT", "9103", "spam /metrics and /healthz.", int)
    delivery_metrics_port: int = _setting(
        "DELIVERY_METRICS_PORT", "9104", "delivery /metrics and /healthz.", int
    )
    directory_metrics_port: int = _setting(
        "DIRECTORY_METRICS_PORT", "9105", "directory /metrics and /healthz.", int
    )
    notify_metrics_port: int = _setting("NOTIFY_METRICS_PORT", "9106", "notify /metrics and /healthz.", int)
    webmail_metrics_port: int = _setting(
        "WEBMAIL_METRICS_PORT", "9107", "webmail /metrics and /healthz.", int
    )

    # --- spam -----------------------------------------------------------------------------------------
    spam_model_dir: str = _setting(
        "SPAM_MODEL_DIR", "", "Local cache of spam model versions (empty: STATE_DIR/models/spam)."
    )
    spam_corpus_dir: str = _setting(
        "SPAM_CORPUS_DIR", "", "Cache of the spam training corpus (empty: STATE_DIR/corpus)."
    )
    spam_threshold: float = _setting(
        "SPAM_THRESHOLD", "0", "Spam score from which mail is junk (0: the model's own).", float
    )
    spam_model_poll_seconds: float = _setting(
        "SPAM_MODEL_POLL_SECONDS", "30", "Seconds between checks of the active spam model.", float
    )
    spam_feedback_daily_cap: int = _setting(
        "SPAM_FEEDBACK_DAILY_CAP", "50", "Spam reports per user and day that may train the shared model.", int
    )
    spam_feedback_quorum: int = _setting(
        "SPAM_FEEDBACK_QUORUM", "3", "Distinct reporters before a message trains at full weight.", int
    )
    spam_feedback_learning_rate: float = _setting(
        "SPAM_FEEDBACK_LEARNING_RATE", "0.5", "Step size of one full-weight spam report.", float
    )
    spam_feedback_user_budget: float = _setting(
        "SPAM_FEEDBACK_USER_BUDGET", "2.0", "Largest change (L2) one user may make to the model.", float
    )

    spam_feedback_publish_seconds: float = _setting(
        "SPAM_FEEDBACK_PUBLISH_SECONDS",
        "900",
        "How often user reports are folded into a new active spam model version.",
        float,
    )

    # --- directory ------------------------------------------------------------------------------------
    argon2_time_cost: int = _setting(
        "ARGON2_TIME_COST", "3", "argon2id passes for passwords and NUMENs.", int
    )
    argon2_memory_kib: int = _setting("ARGON2_MEMORY_KIB", "65536", "argon2id memory cost, in KiB.", int)
    argon2_parallelism: int = _setting("ARGON2_PARALLELISM", "4", "argon2id lanes.", int)
    reset_token_ttl: int = _setting(
        "RESET_TOKEN_TTL", "1800", "Lifetime of a password reset link, seconds.", int
    )
    deletion_retention_days: int = _setting(
        "DELETION_RETENTION_DAYS", "30", "Days a deleted account can be restored before it is purged.", int
    )
    default_quota_bytes: int = _setting(
        "DEFAULT_QUOTA_BYTES", "1073741824", "Mailbox quota of new accounts.", int
    )
    directory_admin_token: str = _setting(
        "DIRECTORY_ADMIN_TOKEN", "", "Shared secret required on administrative RPCs (empty: not required)."
    )
    search_refresh_seconds: int = _setting(
        "DIRECTORY_SEARCH_REFRESH", "60", "Seconds between reloads of the in-memory address-book index.", int
    )
    demo_password: str = _setting("DEMO_PASSWORD", "Montpellier-Demo-2026!", "Password of the demo account.")

    # --- scan -----------------------------------------------------------------------------------------
    scan_max_attempts: int = _setting(
        "SCAN_MAX_ATTEMPTS",
        "12",
        "Attempts at a verdict while clamd is unreachable; then the mail waits in the dead-letter queue.",
        int,
    )

    # --- ingest ---------------------------------------------------------------------------------------
    ingest_hostname: str = _setting(
        "INGEST_HOSTNAME", "", "Name ingest gives in its SMTP greeting and Received headers (empty: FQDN)."
    )
    ingest_max_message_bytes: int = _setting(
        "INGEST_MAX_MESSAGE_BYTES", "26214400", "Largest message ingest accepts, in bytes (552 5.3.4).", int
    )
    ingest_max_header_bytes: int = _setting(
        "INGEST_MAX_HEADER_BYTES", "102400", "Largest header section ingest accepts, in bytes.", int
    )
    ingest_max_recipients: int = _setting(
        "INGEST_MAX_RECIPIENTS", "1000", "Recipients per message; the next RCPT gets 452 4.5.3.", int
    )
    ingest_max_sessions: int = _setting(
        "INGEST_MAX_SESSIONS", "1000", "Concurrent SMTP sessions per ingest process (then 421).", int
    )
    ingest_session_deadline: float = _setting(
        "INGEST_SESSION_DEADLINE", "600", "Seconds an SMTP session may last in all (then 421 4.4.2).", float
    )
    ingest_idle_timeout: float = _setting(
        "INGEST_IDLE_TIMEOUT", "300", "Seconds ingest waits for the client's next command or data.", float
    )
    ingest_commit_timeout: float = _setting(
        "INGEST_COMMIT_TIMEOUT", "30", "Seconds to store a message and publish its event (then 451).", float
    )
    ingest_directory_timeout: float = _setting(
        "INGEST_DIRECTORY_TIMEOUT", "5", "Seconds ingest waits for one directory answer.", float
    )
    ingest_shutdown_grace: float = _setting(
        "INGEST_SHUTDOWN_GRACE", "30", "Seconds sessions in progress may finish after SIGTERM.", float
    )
    ingest_tls_cert: str = _setting(
        "INGEST_TLS_CERT", "", "STARTTLS certificate (PEM; empty: a self-signed one in STATE_DIR/data/tls)."
    )
    ingest_tls_key: str = _setting(
        "INGEST_TLS_KEY", "", "STARTTLS private key (PEM; empty: beside the self-signed certificate)."
    )
    submission_service_user: str = _setting(
        "SUBMISSION_SERVICE_USER",
        "webmail",
        "Login of the webmail's service identity on the submission port (SASL PLAIN with an authzid).",
    )
    submission_service_secret: str = _setting(
        "SUBMISSION_SERVICE_SECRET",
        "",
        "Shared secret of that service identity, same value for ingest and the webmail (empty: disabled).",
    )
    submission_host: str = _setting(
        "SUBMISSION_HOST",
        "",
        "Host the webmail sends mail to on SMTP_SUBMISSION_PORT (empty: SMTP_HOST; 127.0.0.1 for 0.0.0.0).",
    )
    submission_ca_file: str = _setting(
        "SUBMISSION_CA_FILE",
        "",
        "CA file the webmail trusts for the submission port's STARTTLS (empty: ingest's development "
        "certificate in STATE_DIR/data/tls if present, else the system CAs).",
    )

    # --- notify and relay -----------------------------------------------------------------------------
    notify_sender: str = _setting(
        "NOTIFY_SENDER",
        "Webmail académique <ne-pas-repondre@ac-montpellier.fr>",
        "From address of the platform's own mails (notices, reset links).",
    )
    smarthost: str = _setting(
        "SMARTHOST",
        "",
        "host:port of the relay for mail leaving the academy (empty: no relay; such mail waits and retries).",
    )
    mx_address: str = _setting(
        "MX_ADDRESS",
        "",
        "host:port of the academy's MX (ingest), where notify sends the platform's own mails to academy "
        "addresses (empty: SMTP_HOST:SMTP_MX_PORT; 127.0.0.1 for 0.0.0.0).",
    )

    # --- webmail --------------------------------------------------------------------------------------
    webmail_session_idle_minutes: float = _setting(
        "WEBMAIL_SESSION_IDLE_MINUTES", "30", "A webmail session ends after this many idle minutes.", float
    )
    webmail_session_max_hours: float = _setting(
        "WEBMAIL_SESSION_MAX_HOURS", "12", "A webmail session ends this long after login, whatever.", float
    )
    webmail_cookie_secure: bool = _setting(
        "WEBMAIL_COOKIE_SECURE",
        "true",
        "Session cookie as `__Host-` + Secure (browsers accept it on https and on http://127.0.0.1).",
        bool,
    )
    webmail_assets_dir: str = _setting(
        "WEBMAIL_ASSETS_DIR",
        "<project>/services/webmail/node_modules",
        "Where the npm front-end assets (DSFR, htmx) are installed (`make bootstrap`).",
    )
    webmail_page_size: int = _setting("WEBMAIL_PAGE_SIZE", "50", "Messages per page in a folder.", int)
    webmail_max_upload_bytes: int = _setting(
        "WEBMAIL_MAX_UPLOAD_BYTES", "26214400", "Largest total of attachments on one message (bytes).", int
    )

    # --- delivery -------------------------------------------------------------------------------------
    mailbox_quota_bytes: int = _setting(
        "MAILBOX_QUOTA_BYTES",
        "1073741824",
        "Default mailbox quota (bytes) when the directory gives none.",
        int,
    )
    relay_poll_seconds: float = _setting(
        "RELAY_POLL_SECONDS",
        "5",
        "How often delivery looks for outgoing mail due for (another) attempt.",
        float,
    )
    relay_retry_delays: str = _setting(
        "RELAY_RETRY_DELAYS",
        "60,300,900,1800,3600",
        "Seconds between relay attempts after a temporary failure (the last one repeats).",
    )
    relay_max_age_hours: float = _setting(
        "RELAY_MAX_AGE_HOURS", "120", "Give up relaying (and bounce) after this many hours.", float
    )

    @classmethod
    def load(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read every setting from `environ` (default: the process environment)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            meta = f.metadata
            default = meta["default"].replace("<project>", str(PROJECT_ROOT))
            raw = environ.get(meta["env"], default)
            values[f.name] = _parse(meta["kind"], meta["env"], raw)
        settings = cls(**values)
        settings.retry_delay_seconds()  # validate early
        settings.mx_endpoint()
        return settings

    def retry_delay_seconds(self) -> tuple[int, ...]:
        """The back-off tiers, in seconds, parsed from EVENT_RETRY_DELAYS."""
        try:
            delays = tuple(int(part) for part in self.retry_delays.split(",") if part.strip())
        except ValueError:
            raise ConfigError(
                f"EVENT_RETRY_DELAYS={self.retry_delays!r}: expected seconds like 1,5,30"
            ) from None
        if not delays or any(d <= 0 for d in delays):
            raise ConfigError(f"EVENT_RETRY_DELAYS={self.retry_delays!r}: needs positive whole seconds")
        return delays

    def mx_endpoint(self) -> tuple[str, int]:
        """(host, port) of the academy's MX for the platform's own mails: MX_ADDRESS, else our listener."""
        if not self.mx_address:
            host = "127.0.0.1" if self.smtp_host in {"", "0.0.0.0", "::"} else self.smtp_host
            return host, self.smtp_mx_port
        host, colon, port = self.mx_address.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"MX_ADDRESS={self.mx_address!r}: expected host:port, like ingest:2525")
        return host.strip("[]"), int(port)

    @property
    def state_path(self) -> Path:
        """`state_dir` as a Path."""
        return Path(self.state_dir)

    @property
    def local_clamd_socket(self) -> Path:
        """The local socket of the clamd `make run` starts (scripts/stack.py), which it gives scan as
        CLAMD_SOCKET."""
        return self.state_path / "run" / "clamd.sock"


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _cached
    if _cached is None:
        _cached = Settings.load()
    return _cached


def reset_settings() -> None:
    """Forget the cached settings (tests that change the environment call this)."""
    global _cached
    _cached = None


def markdown_table() -> str:
    """The configuration table, as README.md shows it."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        meta = f.metadata
        rows.append(f"| `{meta['env']}` | `{meta['default']}` | {meta['doc']} |")
    return "\n".join(rows)


def update_readme(readme: Path = PROJECT_ROOT / "README.md") -> bool:
    """Rewrite the table between README.md's configuration markers; True if it changed."""
    start, end = (
        "<!-- configuration table: generated by `python -m common.config` -->",
        "<!-- end of configuration table -->",
    )
    text = readme.read_text()
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    updated = f"{head}{start}\n{markdown_table()}\n{end}{tail}"
    if updated != text:
        readme.write_text(updated)
    return updated != text


if __name__ == "__main__":
    if sys.argv[1:] == ["--update-readme"]:
        print("README.md updated" if update_readme() else "README.md already up to date")
    else:
        sys.stdout.write(markdown_table() + "\n")
