"""common service."""
