"""Errors of the scan service."""


class ScannerUnavailable(RuntimeError):
    """clamd could not give a verdict (down, timing out, or answering an error): retry later, never pass."""
