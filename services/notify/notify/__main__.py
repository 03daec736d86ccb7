"""`python -m notify`: run the notify service."""

from common.nameko_runner import run_service  # noqa: I001 - must come first (eventlet)

from common.config import get_settings
from common.db import ping
from notify.service import NotifyService


def main() -> None:
    run_service(NotifyService, "notify", get_settings().notify_metrics_port, checks={"database": ping})


if __name__ == "__main__":
    main()
