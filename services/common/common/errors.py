"""Errors shared by the services."""


class PermanentFailure(Exception):
    """Handling this event can never succeed (its data is gone, its content is impossible): retrying is
    pointless, so `common.bus.event_handler` sends it straight to the dead-letter queue."""
