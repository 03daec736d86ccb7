"""scan: antivirus verdicts from clamd for every received message (fails closed)."""
