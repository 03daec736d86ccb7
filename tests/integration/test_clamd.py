"""The real clamd, with the project's signature database, gives the verdicts the pipeline relies on."""

from __future__ import annotations

from pathlib import Path

import pyclamd
import pytest

from common.config import get_settings

TESTFILES = Path("/usr/share/clamav-testfiles")
# Split so that this source file is not itself detected as the EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

ORDINARY_MESSAGE = (
    b"From: Camille Martin <camille.martin@ac-montpellier.fr>\r\n"
    b"To: Louis Garcia <louis.garcia@ac-montpellier.fr>\r\n"
    b"Subject: =?utf-8?q?Conseil_de_classe_de_3e_B?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Bonjour Louis,\r\nle conseil de classe aura lieu jeudi a 17 h.\r\nBonne journee.\r\n"
)


@pytest.fixture(scope="module")
def clamd():
    settings = get_settings()
    return pyclamd.ClamdNetworkSocket(settings.clamd_host, settings.clamd_port, timeout=30)


def test_clamd_answers_ping(clamd):
    assert clamd.ping()


def test_eicar_is_found(clamd):
    status, signature = clamd.scan_stream(EICAR)["stream"]
    assert status == "FOUND"
    assert "EICAR" in signature


def test_eicar_inside_a_mail_attachment_is_found(clamd):
    import base64

    message = (
        ORDINARY_MESSAGE.replace(
            b"Content-Type: text/plain; charset=utf-8", b'Content-Type: multipart/mixed; boundary="b"'
        ).split(b"\r\n\r\n", 1)[0]
        + b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nVoir la piece jointe.\r\n--b\r\n"
        + b'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="x.com"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )
    status, signature = clamd.scan_stream(message)["stream"]
    assert (status, "EICAR" in signature) == ("FOUND", True)


@pytest.mark.parametrize("name", ["clam.exe", "clam.zip", "clam.exe.bz2", "clam-upx.exe"])
def test_clamav_test_files_are_found(clamd, name):
    status, signature = clamd.scan_stream((TESTFILES / name).read_bytes())["stream"]
    assert status == "FOUND"
    assert "clam" in signature


def test_an_ordinary_message_is_clean(clamd):
    assert clamd.scan_stream(ORDINARY_MESSAGE) is None


def test_the_clamd_up_gauge_follows_the_last_answer():
    from prometheus_client import REGISTRY

    from scan.clamd import ClamdScanner
    from scan.exceptions import ScannerUnavailable
    from tests.helpers import free_port

    settings = get_settings()
    scanner = ClamdScanner(settings.clamd_host, settings.clamd_port, 30)
    nowhere = ClamdScanner("127.0.0.1", free_port(), 2)
    assert not scanner.scan(ORDINARY_MESSAGE).infected
    assert REGISTRY.get_sample_value("scan_clamd_up") == 1
    with pytest.raises(ScannerUnavailable):
        nowhere.scan(ORDINARY_MESSAGE)
    assert REGISTRY.get_sample_value("scan_clamd_up") == 0
    assert scanner.ping()
    assert REGISTRY.get_sample_value("scan_clamd_up") == 1
    assert not nowhere.ping()
    assert REGISTRY.get_sample_value("scan_clamd_up") == 0


def test_the_scanner_finds_eicar_at_the_end_of_a_message_larger_than_a_chunk():
    """The scanner's writes are grouped (scan.clamd._Corked): a message of several chunks still reaches
    clamd whole, in order, and a clean one of the same size is clean."""
    from scan.clamd import CHUNK_SIZE, ClamdScanner

    settings = get_settings()
    scanner = ClamdScanner(settings.clamd_host, settings.clamd_port, 30)
    padding = b"Bonjour,\r\n" + b"x" * 70 + b"\r\n"
    body = ORDINARY_MESSAGE + padding * (3 * CHUNK_SIZE // len(padding))
    assert len(body) > 2 * CHUNK_SIZE
    assert not scanner.scan(body).infected
    verdict = scanner.scan(body + EICAR + b"\r\n")
    assert verdict.infected
    assert "EICAR" in verdict.signature


def test_the_scanner_talks_to_clamd_over_its_local_socket_too(tmp_path):
    from scan.clamd import ClamdScanner
    from scan.exceptions import ScannerUnavailable

    settings = get_settings()
    if not settings.local_clamd_socket.exists():
        pytest.skip("clamd here is not the one scripts/stack.py starts (no local socket)")
    local = ClamdScanner("", 0, 30, socket_path=str(settings.local_clamd_socket))
    assert local.address == str(settings.local_clamd_socket)
    assert local.ping()
    assert local.scan(ORDINARY_MESSAGE).infected is False
    verdict = local.scan(EICAR)
    assert verdict.infected and "EICAR" in verdict.signature
    with pytest.raises(ScannerUnavailable, match=r"no-clamd\.sock"):
        ClamdScanner("", 0, 2, socket_path=str(tmp_path / "no-clamd.sock")).scan(ORDINARY_MESSAGE)
