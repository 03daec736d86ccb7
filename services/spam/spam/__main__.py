"""`python -m spam`: run the spam service (a model must be active: `make model`)."""

from common.nameko_runner import run_service  # noqa: I001 - must come first (eventlet)

from common.config import get_settings
from common.db import ping
from spam.service import SpamService


def main() -> None:
    run_service(SpamService, "spam", get_settings().spam_metrics_port, checks={"database": ping})


if __name__ == "__main__":
    main()
