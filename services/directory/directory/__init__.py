"""directory service."""
