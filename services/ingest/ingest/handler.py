"""The decisions of an ingest SMTP session, as an aiosmtpd handler: who may send, to whom, and what
happens to a message once its DATA has been read and checked.

One handler serves one port. `origin` is "mx" (mail from other servers: local recipients only, no
relaying) or "submission" (an authenticated member of staff sending: any recipient, but only from their
own address). Blocking work (the directory, the database, the broker) runs in thread executors; a
failure of any of them is answered with a temporary 4xx code, never a permanent one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import socket
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP

from common.events import MAX_ENVELOPE_BYTES
from common.logs import new_trace_id, trace_context
from ingest import codes, metrics
from ingest.commit import CommitFailed, Committer
from ingest.message import ReceivedInfo, protocol_name, stored_message
from ingest.recipients import (
    DirectoryUnavailable,
    Login,
    RecipientDirectory,
    Resolution,
    is_local_domain,
)
from ingest.server import IngestEnvelope, IngestLimits, IngestSession, SessionTracker

log = logging.getLogger(__name__)

#: Room for recipients in one `mail.received` event: consumers refuse envelopes over MAX_ENVELOPE_BYTES,
#: so a transaction whose recipients would not fit gets 452 (send the rest in another transaction).
RECIPIENT_BYTES_BUDGET = MAX_ENVELOPE_BYTES - 16 * 1024

#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets.
MAX_ADDRESS_OCTETS = 254

#: Seconds allowed for the client's reverse DNS lookup (the Received header says "unknown" after).
RDNS_TIMEOUT = 2.0

_RESOLUTION_REFUSALS = {
    "unknown": codes.UNKNOWN_RECIPIENT,
    "suspended": codes.SUSPENDED_RECIPIENT,
    "deleted": codes.DELETED_RECIPIENT,
}


@dataclass(frozen=True)
class ServiceIdentity:
    """The webmail's login on the submission port (SUBMISSION_SERVICE_USER / _SECRET).

    The webmail never has its users' passwords: it logs in as this identity with SASL PLAIN and names
    the user in the authzid (RFC 4616). An empty secret disables it.
    """

    user: str
    secret: str = field(repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.user and self.secret)

    def matches_user(self, username: str) -> bool:
        return self.enabled and username.strip().lower() == self.user.lower()

    def secret_matches(self, given: str) -> bool:
        # Constant time: the comparison must not tell an attacker how much of the secret was right.
        return self.enabled and hmac.compare_digest(given.encode("utf-8"), self.secret.encode("utf-8"))


class IngestHandler:
    """aiosmtpd hooks for one port (see the module docstring)."""

    def __init__(
        self,
        *,
        origin: str,
        mail_domain: str,
        server_name: str,
        directory: RecipientDirectory,
        committer: Committer,
        directory_executor: Executor,
        limits: IngestLimits,
        tracker: SessionTracker,
        service: ServiceIdentity | None = None,
    ):
        if origin not in ("mx", "submission"):
            raise ValueError(f"origin must be 'mx' or 'submission', not {origin!r}")
        self.origin = origin
        self.mail_domain = mail_domain.lower()
        self.server_name = server_name
        self.directory = directory
        self.committer = committer
        self.directory_executor = directory_executor
        self.limits = limits
        self.tracker = tracker
        #: The webmail's service identity, when SUBMISSION_SERVICE_SECRET is set.
        self.service = service if service is not None and service.enabled else None

    # --- greeting -------------------------------------------------------------------------------------

    async def handle_EHLO(
        self,
        server: SMTP,
        session: IngestSession,
        envelope: IngestEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # The MX port takes no logins: do not advertise AUTH there (aiosmtpd would, after STARTTLS).
        kept = [line for line in responses if not (self.origin == "mx" and line[4:].startswith("AUTH"))]
        # RFC 2034: enhanced status codes are announced before they are used.
        kept.insert(len(kept) - 1, "250-ENHANCEDSTATUSCODES")
        return kept

    # --- AUTH (called by IngestSMTP._finish_auth) -----------------------------------------------------

    async def authenticate(
        self, session: IngestSession, login: bytes, password: bytes, authzid: bytes = b""
    ) -> tuple[str, Login | None]:
        """Check credentials with the directory; returns (reply, the Login when it succeeded).

        `authzid` (SASL PLAIN's authorisation identity) lets the webmail's service identity send as the
        user logged in to the webmail, which has no password to give. From anyone else, an authzid
        naming another account is refused.
        """
        if self.origin != "submission":
            return codes.AUTH_NOT_OFFERED, None
        username = login.decode("utf-8", errors="replace")
        secret = password.decode("utf-8", errors="replace")
        acting_for = authzid.decode("utf-8", errors="replace").strip()
        if self.service is not None and self.service.matches_user(username):
            return await self._authenticate_service(session, secret, acting_for)
        try:
            result = await self._directory_call(
                self.directory.authenticate, username, secret, _peer_ip(session)
            )
        except (DirectoryUnavailable, TimeoutError) as exc:
            log.warning("directory unavailable for AUTH: %s", exc, extra={"origin": self.origin})
            metrics.AUTH_ATTEMPTS.labels("unavailable").inc()
            return codes.AUTH_TEMPORARY_FAILURE, None
        if result.ok and acting_for and acting_for.lower() != (result.account or "").lower():
            # A member of staff may name themselves as authzid, never someone else.
            metrics.AUTH_ATTEMPTS.labels("authzid_refused").inc()
            log.warning(
                "submission login refused: authzid names another account",
                extra={"account": result.account, "peer": _peer_ip(session)},
            )
            return codes.AUTH_FAILED, None
        if result.ok:
            session.login = result
            metrics.AUTH_ATTEMPTS.labels("ok").inc()
            log.info("submission login", extra={"account": result.account, "peer": _peer_ip(session)})
            return codes.AUTH_OK, result
        metrics.AUTH_ATTEMPTS.labels(result.reason or "refused").inc()
        log.info("submission login refused: %s", result.reason, extra={"peer": _peer_ip(session)})
        return (codes.AUTH_TEMPORARY_FAILURE if result.temporary else codes.AUTH_FAILED), None

    async def _authenticate_service(
        self, session: IngestSession, secret: str, acting_for: str
    ) -> tuple[str, Login | None]:
        """The webmail's service identity: the shared secret, then the account it acts for."""
        assert self.service is not None
        if not self.service.secret_matches(secret):
            metrics.AUTH_ATTEMPTS.labels("service_refused").inc()
            log.warning("service login refused: wrong secret", extra={"peer": _peer_ip(session)})
            return codes.AUTH_FAILED, None
        if not acting_for:
            # The service identity owns no mailbox: it may only act for someone.
            metrics.AUTH_ATTEMPTS.labels("service_refused").inc()
            log.warning("service login refused: no authzid", extra={"peer": _peer_ip(session)})
            return codes.AUTH_FAILED, None
        if not is_local_domain(acting_for, self.mail_domain):
            metrics.AUTH_ATTEMPTS.labels("service_refused").inc()
            log.warning("service login refused: authzid is not local", extra={"peer": _peer_ip(session)})
            return codes.AUTH_FAILED, None
        try:
            resolution: Resolution = await self._resolve(acting_for)
        except (DirectoryUnavailable, TimeoutError) as exc:
            log.warning("directory unavailable for AUTH: %s", exc, extra={"origin": self.origin})
            metrics.AUTH_ATTEMPTS.labels("unavailable").inc()
            return codes.AUTH_TEMPORARY_FAILURE, None
        # Only an active account (the directory's "deliverable"): suspended, deleted, unknown are refused.
        if resolution.status != "local" or not resolution.mailbox:
            metrics.AUTH_ATTEMPTS.labels("service_refused").inc()
            log.warning(
                "service login refused: authzid is %s", resolution.status, extra={"peer": _peer_ip(session)}
            )
            return codes.AUTH_FAILED, None
        login = Login(True, resolution.mailbox, "ok")
        session.login = login
        metrics.AUTH_ATTEMPTS.labels("ok").inc()
        log.info(
            "submission login for the webmail",
            extra={"account": login.account, "peer": _peer_ip(session), "service": self.service.user},
        )
        return codes.AUTH_OK, login

    # --- envelope -------------------------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: IngestSession,
        envelope: IngestEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.tracker.draining:
            return codes.SHUTTING_DOWN
        problem = _address_problem(address, envelope, sender=True)
        if problem:
            return problem
        sender = "" if address == "<>" else address
        if session.client_name_task is None:
            session.client_name_task = asyncio.ensure_future(_lookup_name(_peer_ip(session)))
        if self.origin == "submission" and not await self._sender_allowed(session, sender):
            log.info("sender not owned by the account", extra={"account": _account(session)})
            return codes.SENDER_NOT_OWNED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.SENDER_OK

    async def handle_RCPT(
        self,
        server: SMTP,
        session: IngestSession,
        envelope: IngestEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        status = await self._recipient(session, envelope, address)
        if status.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        else:
            metrics.RECIPIENTS_REFUSED.labels(self.origin, metrics.code_of(status)).inc()
        return status

    async def _recipient(self, session: IngestSession, envelope: IngestEnvelope, address: str) -> str:
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return codes.TOO_MANY_RECIPIENTS
        problem = _address_problem(address, envelope, sender=False)
        if problem or address == "<>":
            return problem or codes.BAD_RECIPIENT_SYNTAX
        if "@" not in address:
            if address.lower() != "postmaster":  # RFC 5321 §4.5.1: <Postmaster> needs no domain
                return codes.BAD_RECIPIENT_SYNTAX
            address = f"postmaster@{self.mail_domain}"
        if not is_local_domain(address, self.mail_domain):
            if self.origin == "mx":
                return codes.RELAY_DENIED
            return _add_mailbox(envelope, address)
        try:
            resolution: Resolution = await self._resolve(address)
        except (DirectoryUnavailable, TimeoutError) as exc:
            log.warning("directory unavailable for RCPT: %s", exc, extra={"origin": self.origin})
            return codes.DIRECTORY_UNAVAILABLE
        if resolution.status == "local" and resolution.mailbox:
            return _add_mailbox(envelope, resolution.mailbox)
        if resolution.status == "external":
            # The directory says a local-looking address lives elsewhere: relaying rules apply.
            if self.origin == "mx":
                return codes.RELAY_DENIED
            return _add_mailbox(envelope, address)
        return _RESOLUTION_REFUSALS.get(resolution.status, codes.UNKNOWN_RECIPIENT)

    async def _sender_allowed(self, session: IngestSession, sender: str) -> bool:
        """On submission, MAIL FROM must be the account's address or one of its aliases."""
        account = _account(session)
        if not account or not sender:
            return False
        if sender.lower() == account:
            return True
        if not is_local_domain(sender, self.mail_domain):
            return False
        try:
            resolution = await self._resolve(sender)
        except (DirectoryUnavailable, TimeoutError):
            return False
        return resolution.status == "local" and resolution.mailbox == account

    async def _resolve(self, address: str) -> Resolution:
        """The directory's answer for `address`. An answer the directory knows without a call (remembered
        by `CachedRecipients`, or an outside address) is taken on the event loop: a thread round trip per
        RCPT cost more than the lookup itself."""
        known = self.directory.known(address)
        if known is not None:
            return known
        return await self._directory_call(self.directory.resolve, address)

    async def _directory_call(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.directory_executor, fn, *args)
        return await asyncio.wait_for(future, self.limits.directory_timeout)

    # --- DATA -----------------------------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: IngestSession, envelope: IngestEnvelope) -> str:
        """Store the checked message once, publish `mail.received`, and only then answer 250."""
        started = time.perf_counter()
        message_id = uuid.uuid4().hex
        with trace_context(new_trace_id()) as trace_id:
            received_at = dt.datetime.now(dt.UTC)
            info = ReceivedInfo(
                helo=session.host_name or "unknown",
                client_ip=_peer_ip(session),
                client_name=await self._client_name(session),
                server_name=self.server_name,
                protocol=protocol_name(
                    extended=session.extended_smtp,
                    tls=session.ssl is not None,
                    authenticated=bool(session.authenticated),
                    smtputf8=envelope.smtp_utf8,
                ),
                message_id=message_id,
                recipients=tuple(envelope.rcpt_tos),
                received_at=received_at,
                tls=_tls_description(session),
            )
            assert isinstance(envelope.original_content, bytes)
            data = stored_message(info, trace_id, envelope.original_content)
            sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
            payload: dict[str, Any] = {
                "message_id": message_id,
                "sender": sender,
                "recipients": list(envelope.mailboxes),
                "size": len(data),
                "origin": self.origin,
                "received_at": received_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "client_address": info.client_ip,
            }
            if session.login is not None and session.login.account:
                payload["authenticated_account"] = session.login.account
            message_id_header = envelope.collector.message_id_header if envelope.collector else None
            if message_id_header:
                payload["message_id_header"] = message_id_header
            metadata = {
                "content_type": "message/rfc822",
                "origin": self.origin,
                "sender": sender,
                "recipient_count": len(envelope.mailboxes),
                "received_at": received_at,
                "trace_id": trace_id,
                "client_address": info.client_ip,
            }
            try:
                await self.committer.commit(message_id, data, metadata, payload, trace_id)
            except CommitFailed as exc:
                log.error(
                    "message not accepted: %s",
                    exc,
                    extra={"message_id": message_id, "origin": self.origin, "stage": exc.stage},
                )
                metrics.MESSAGES.labels(self.origin, "failed", metrics.code_of(codes.INTERNAL_ERROR)).inc()
                return codes.INTERNAL_ERROR
            elapsed = time.perf_counter() - started
            metrics.ACCEPT_SECONDS.labels(self.origin).observe(elapsed)
            metrics.MESSAGES.labels(self.origin, "accepted", metrics.code_of(codes.OK)).inc()
            metrics.RECEIVED_BYTES.labels(self.origin).inc(len(data))
            metrics.MESSAGE_BYTES.labels(self.origin).observe(len(data))
            log.info(
                "message accepted",
                extra={
                    "message_id": message_id,
                    "origin": self.origin,
                    "size": len(data),
                    "recipients": len(envelope.mailboxes),
                    "seconds": round(elapsed, 4),
                },
            )
            return codes.QUEUED.format(message_id=message_id)

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's default answers 500 with the exception's text; an internal failure is temporary."""
        log.error("unexpected error in an SMTP session", exc_info=error, extra={"origin": self.origin})
        metrics.MESSAGES.labels(self.origin, "failed", metrics.code_of(codes.INTERNAL_ERROR)).inc()
        return codes.INTERNAL_ERROR

    async def _client_name(self, session: IngestSession) -> str | None:
        """The client's forward-confirmed reverse DNS name, or None; looked up once per session, started
        at MAIL (see handle_MAIL) so that the lookup overlaps the transfer instead of delaying the 250."""
        if session.client_name_task is None:
            session.client_name_task = asyncio.ensure_future(_lookup_name(_peer_ip(session)))
        try:
            return await asyncio.shield(session.client_name_task)
        except Exception:  # noqa: BLE001 - a name is a nicety; the header then says "unknown"
            return None


async def _lookup_name(ip: str) -> str | None:
    loop = asyncio.get_running_loop()
    try:
        name, _ = await asyncio.wait_for(loop.getnameinfo((ip, 0), socket.NI_NAMEREQD), RDNS_TIMEOUT)
        infos = await asyncio.wait_for(loop.getaddrinfo(name, None), RDNS_TIMEOUT)
    except (OSError, TimeoutError, UnicodeError):
        return None
    return name if any(info[4][0] == ip for info in infos) else None


def _add_mailbox(envelope: IngestEnvelope, mailbox: str) -> str:
    """Accept a recipient: one copy per mailbox (an alias and its mailbox, or a repeated RCPT), and
    never more recipients than one `mail.received` event can carry."""
    if mailbox in envelope.mailboxes:
        return codes.RECIPIENT_OK
    size = len(mailbox.encode("utf-8")) + 4  # quotes, comma and space in the event's JSON
    if envelope.mailbox_bytes + size > RECIPIENT_BYTES_BUDGET:
        return codes.TOO_MANY_RECIPIENTS
    envelope.mailboxes.append(mailbox)
    envelope.mailbox_bytes += size
    return codes.RECIPIENT_OK


def _peer_ip(session: IngestSession) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "unknown")


def _account(session: IngestSession) -> str | None:
    return session.login.account if session.login is not None else None


def _tls_description(session: IngestSession) -> str | None:
    """ "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384" for the Received header, when STARTTLS was used."""
    if session.ssl is None:
        return None
    ssl_object = session.ssl.get("ssl_object")
    cipher = ssl_object.cipher() if ssl_object is not None else None
    if not cipher:
        return "TLS"
    name, version, _bits = cipher
    return f"{version} with cipher {name}"


def _address_problem(address: str, envelope: IngestEnvelope, sender: bool) -> str | None:
    """A reply refusing an address that cannot travel safely in our headers and events, or None."""
    try:
        encoded = address.encode("utf-8")
    except UnicodeEncodeError:  # aiosmtpd decodes with surrogateescape: the client sent invalid UTF-8
        return codes.SENDER_NOT_UTF8 if sender else codes.RECIPIENT_NOT_UTF8
    if len(encoded) > MAX_ADDRESS_OCTETS:
        return codes.ADDRESS_TOO_LONG
    if not address.isascii() and not envelope.smtp_utf8:
        return codes.NEEDS_SMTPUTF8
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in address):
        return codes.BAD_SENDER_SYNTAX if sender else codes.BAD_RECIPIENT_SYNTAX
    return None
