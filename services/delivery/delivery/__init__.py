"""delivery: files classified mail into mailbox folders, once per recipient, over one stored copy."""
