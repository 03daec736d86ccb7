"""scan service."""
