"""`python -m scan`: run the scan service."""

from common.nameko_runner import run_service  # noqa: I001 - must come first (eventlet)

from common.config import get_settings
from scan.service import ClamdScanner, ScanService


def main() -> None:
    settings = get_settings()
    scanner = ClamdScanner.from_settings(settings)
    run_service(ScanService, "scan", settings.scan_metrics_port, checks={"clamd": scanner.ping})


if __name__ == "__main__":
    main()
