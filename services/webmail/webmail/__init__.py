"""webmail service."""
