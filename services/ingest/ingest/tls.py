"""STARTTLS for ingest: the server's TLS context, and a self-signed certificate for development.

In production INGEST_TLS_CERT and INGEST_TLS_KEY name a real certificate (a Kubernetes secret). When
they are left empty, ingest uses STATE_DIR/data/tls/ingest.{crt,key}, and makes a self-signed pair there
with the `openssl` command on first start, so a developer machine needs no setup (and the project no
extra Python dependency for it).
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


class TLSConfigError(RuntimeError):
    """No usable certificate: the configured files are missing, or one could not be generated."""


def certificate_paths(cert: str, key: str, state_dir: Path) -> tuple[Path, Path, bool]:
    """(certificate, key, whether they are the development defaults) from the settings."""
    if cert or key:
        if not (cert and key):
            raise TLSConfigError("set both INGEST_TLS_CERT and INGEST_TLS_KEY, or neither")
        return Path(cert), Path(key), False
    folder = state_dir / "data" / "tls"
    return folder / "ingest.crt", folder / "ingest.key", True


def ensure_self_signed(cert: Path, key: Path, hostname: str) -> None:
    """Create a self-signed certificate and key for `hostname` unless both files exist."""
    if cert.exists() and key.exists():
        return
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSConfigError("no TLS certificate and no `openssl` command to make a development one")
    cert.parent.mkdir(parents=True, exist_ok=True)
    tmp_key, tmp_cert = key.with_suffix(".key.tmp"), cert.with_suffix(".crt.tmp")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "825",
            "-subj",
            f"/CN={hostname}",
            "-addext",
            f"subjectAltName=DNS:{hostname},DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(tmp_key),
            "-out",
            str(tmp_cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    os.chmod(tmp_key, 0o600)
    # Rename last, key first: a crash half-way leaves no certificate without its key.
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)
    log.warning("generated a self-signed development certificate", extra={"certificate": str(cert)})


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or later, no client certificates asked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load the TLS certificate {cert}: {exc}") from exc
    return context


def load_context(cert_setting: str, key_setting: str, state_dir: Path, hostname: str) -> ssl.SSLContext:
    """The STARTTLS context from the settings, generating the development certificate if needed."""
    cert, key, development = certificate_paths(cert_setting, key_setting, state_dir)
    if development:
        ensure_self_signed(cert, key, hostname)
    elif not (cert.exists() and key.exists()):
        raise TLSConfigError(f"INGEST_TLS_CERT/INGEST_TLS_KEY point to missing files: {cert}, {key}")
    return server_context(cert, key)
