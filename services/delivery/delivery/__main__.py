"""`python -m delivery`: run the delivery service."""

from common.nameko_runner import run_service  # noqa: I001 - must come first (eventlet)

from common.config import get_settings
from common.db import ping
from delivery.service import DeliveryService


def main() -> None:
    run_service(DeliveryService, "delivery", get_settings().delivery_metrics_port, checks={"database": ping})


if __name__ == "__main__":
    main()
