"""Every SMTP reply ingest sends, in one place (as aiosmtpd keeps its own in `SMTP_STATUS_CODES`).

Replies carry an RFC 3463 enhanced status code and a short, neutral English text: SMTP is read by
machines and by postmasters, not by the academy's users. The choice of each code is explained beside it
and summarised in docs/ingest.md.

aiosmtpd answers a few protocol errors itself with texts that lack an enhanced code (for instance
"530 Must issue a STARTTLS command first"); `AIOSMTPD_REWRITES` maps those literals to ours, and the
server passes every reply through `rewrite()` before it is sent.
"""

from __future__ import annotations

# --- success ------------------------------------------------------------------------------------------
OK = "250 2.0.0 OK"
RECIPIENT_OK = "250 2.1.5 OK"
SENDER_OK = "250 2.1.0 OK"
#: The message is stored and its event confirmed; the id lets a postmaster find it in our logs.
QUEUED = "250 2.0.0 OK: queued as {message_id}"

# --- recipients ---------------------------------------------------------------------------------------
UNKNOWN_RECIPIENT = "550 5.1.1 No such user here"
#: A suspended account may be reinstated (an investigation, an administrative hold): a temporary code
#: lets the sending server keep the message and retry for days instead of bouncing it at once, and the
#: sender learns why from the delay notice. X.2.1 is "mailbox disabled, not accepting messages".
SUSPENDED_RECIPIENT = "450 4.2.1 Mailbox temporarily disabled, try again later"
#: A deleted account only comes back by an exceptional operator action: permanent.
DELETED_RECIPIENT = "550 5.2.1 Mailbox disabled, not accepting messages"
#: RFC 5321 §4.3.2 lists 550 (not 554) among the replies to RCPT; X.7.1 is "delivery not authorized".
RELAY_DENIED = "550 5.7.1 Relaying denied"
#: RFC 5321 §4.5.3.1.10: 452 asks the client to send the remaining recipients in another transaction.
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
#: The directory could not answer: X.4.3 is "directory server failure"; the client retries later.
DIRECTORY_UNAVAILABLE = "451 4.4.3 Directory temporarily unavailable, try again later"
BAD_RECIPIENT_SYNTAX = "553 5.1.3 Malformed recipient address"
#: Addresses must survive being written into headers and JSON events unchanged.
RECIPIENT_NOT_UTF8 = "553 5.1.3 Address is not valid UTF-8"
#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets.
ADDRESS_TOO_LONG = "553 5.1.3 Address too long"
#: RFC 6531 §3.5: a non-ASCII address is only allowed in a transaction that declared SMTPUTF8.
NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII address requires SMTPUTF8"

# --- senders ------------------------------------------------------------------------------------------
#: An authenticated user may send only as their own address or one of its aliases.
SENDER_NOT_OWNED = "553 5.7.1 Sender address does not belong to the authenticated account"
#: X.1.7 is "bad sender's mailbox address syntax".
BAD_SENDER_SYNTAX = "553 5.1.7 Malformed sender address"
SENDER_NOT_UTF8 = "553 5.1.7 Address is not valid UTF-8"

# --- DATA ---------------------------------------------------------------------------------------------
START_DATA = "354 End data with <CR><LF>.<CR><LF>"
NEED_RCPT = "503 5.5.1 Need RCPT command first"
DATA_SYNTAX = "501 5.5.4 Syntax: DATA"

# --- message content (answered after the final <CRLF>.<CRLF>, for the whole message) -------------------
MESSAGE_TOO_BIG = "552 5.3.4 Message too big"
HEADER_TOO_BIG = "552 5.3.4 Header section too large"
#: RFC 5321 §4.5.3.1.10 names 500 for a line longer than 1,000 octets.
LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
#: A CR or LF that is not part of a CRLF pair: the message is refused whole (SMTP smuggling defence).
#: 550 is a policy rejection allowed after DATA; X.5.2 is "syntax error".
BARE_LINE_ENDING = "550 5.5.2 Bare CR or LF in message, lines must end with CRLF"
#: RFC 5321 §2.3.8 and RFC 5322 forbid NUL in text; without BINARYMIME it can only be damage or an attack.
NUL_IN_MESSAGE = "554 5.6.0 NUL octet in message"

# --- sessions -----------------------------------------------------------------------------------------
SESSION_DEADLINE = "421 4.4.2 Session time limit exceeded, closing connection"
IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
TOO_MANY_SESSIONS = "421 4.3.2 Too many connections, try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"

# --- internal failures --------------------------------------------------------------------------------
#: Never 5xx for our own failures: the sender keeps the message and retries (brief, "delivery semantics").
INTERNAL_ERROR = "451 4.3.0 Temporary local problem, try again later"

# --- authentication (submission) ----------------------------------------------------------------------
AUTH_REQUIRED = "530 5.7.0 Authentication required"
STARTTLS_REQUIRED = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
#: RFC 4954: a temporary failure (directory down, maintenance, throttling) must not look like bad
#: credentials, or clients would ask their user for a new password.
AUTH_TEMPORARY_FAILURE = "454 4.7.0 Temporary authentication failure, try again later"
AUTH_NOT_OFFERED = "503 5.5.1 AUTH not available on this port"

#: aiosmtpd's own replies (left) that lack an enhanced code or say too much, and what we send instead.
AIOSMTPD_REWRITES: dict[str, str] = {
    "530 Must issue a STARTTLS command first": STARTTLS_REQUIRED,
    "500 Command line too long": "500 5.5.2 Command line too long",
    "500 Error: bad syntax": "500 5.5.2 Syntax error",
    "500 Error: strict ASCII mode": "500 5.5.2 Non-ASCII command without SMTPUTF8",
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "503 Error: need MAIL command": "503 5.5.1 Need MAIL command first",
    "503 Error: need RCPT command": NEED_RCPT,
    "503 Error: nested MAIL command": "503 5.5.1 Nested MAIL command",
    "503 Error: send HELO first": "503 5.5.1 Send HELO first",
    "503 Error: send EHLO first": "503 5.5.1 Send EHLO first",
    "503 Already authenticated": "503 5.5.1 Already authenticated",
    "554 Command refused due to lack of security": "554 5.7.0 Command refused due to lack of security",
    "252 Cannot VRFY user, but will accept message and attempt delivery": (
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"
    ),
    "502 EXPN not implemented": "502 5.5.1 EXPN not implemented",
    "250 OK": OK,
    "221 Bye": "221 2.0.0 Bye",
}


def rewrite(status: str) -> str:
    """The reply to send for `status`: ours when aiosmtpd produced a known literal, else unchanged."""
    return AIOSMTPD_REWRITES.get(status, status)


def closes_connection(status: str) -> bool:
    """True for a 421 reply, after which RFC 5321 §3.8 has the server close the channel."""
    return status.startswith("421")
