"""ingest: the platform's SMTP servers (MX and submission). They check each message at the door, store
it once in the blob store and announce it with a confirmed `mail.received` event; see docs/ingest.md."""
