"""Writing mail: compose, reply, forward, drafts, attachments (to be written)."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add this module's routes."""
