"""The SMTP protocol as ingest speaks it: aiosmtpd's `SMTP`, hardened where the brief asks.

aiosmtpd 1.4.6 parses commands well, but ingest changes five things:

- **DATA** is read by our own loop (`smtp_DATA`): only `<CRLF>.<CRLF>` ends it (lines are split on
  CRLF alone, and a "." after an over-long line's fragment does not count), and `DataCollector` refuses
  the whole message for a bare CR or LF, a NUL, a line over 998 octets, an oversized header section or
  message. aiosmtpd's own loop has the same end-of-data rule but keeps bare LFs in the content, which a
  server downstream could read as a line end (SMTP smuggling).
- **A whole-session deadline**: whatever the client does, the session ends with 421 4.4.2 after
  INGEST_SESSION_DEADLINE seconds; a client trickling one byte a second cannot hold a slot forever.
  The idle timeout (aiosmtpd's `timeout`) now answers 421 too instead of dropping the line silently,
  and is re-armed while DATA flows. Neither cuts a session while its message is being committed: the
  cut waits for the reply, so a client is never left not knowing whether its message was taken.
- **AUTH is asynchronous**: aiosmtpd calls its authenticator synchronously, which would block every
  session while the directory hashes a password; here the check runs in a thread. PLAIN keeps its
  authorisation identity (RFC 4616 authzid), which aiosmtpd would silently drop: the handler honours it
  only for the webmail's service identity and refuses it from anyone else.
- **Replies** go through `codes.rewrite` (enhanced status codes on aiosmtpd's own literals), and any
  421 closes the connection (RFC 5321 §3.8).
- **Admission**: over INGEST_MAX_SESSIONS sessions, a new one is greeted with 421 4.3.2 and closed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import time
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from ingest import codes, metrics
from ingest.message import DataCollector
from ingest.recipients import Login

if TYPE_CHECKING:
    from ingest.handler import IngestHandler

log = logging.getLogger(__name__)

#: Do not re-arm the idle timer more often than this while DATA flows (one timer per line is costly).
_IDLE_REARM_SECONDS = 1.0

#: A partial DATA line longer than this is over-long whatever follows (998 octets, plus a transparency
#: dot and a little slack): it is fed to the collector as a fragment instead of being kept whole.
_MAX_PARTIAL_LINE = 1001


@functools.lru_cache(maxsize=4096)
def _parse_path(arg: str) -> tuple[str, str] | None:
    """The address of a MAIL or RCPT argument and the rest of it, or None if it does not parse.

    A pure function of the argument, remembered for the last few thousand arguments: the same senders
    and recipients come back all the time, and email's header parser costs more than the rest of a RCPT.
    """
    try:
        if arg.lstrip().startswith("<"):
            address, rest = get_angle_addr(arg)
        else:
            address, rest = get_addr_spec(arg)
    except HeaderParseError:
        return None
    return address.addr_spec, rest


@dataclass(frozen=True)
class IngestLimits:
    """The limits of one SMTP server; `from_settings` reads them, tests shorten them."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_header_bytes: int = 100 * 1024
    max_recipients: int = 1000
    max_sessions: int = 1000
    session_deadline: float = 600.0
    idle_timeout: float = 300.0
    commit_timeout: float = 30.0
    directory_timeout: float = 5.0
    max_auth_attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Any) -> IngestLimits:
        return cls(
            max_message_bytes=settings.ingest_max_message_bytes,
            max_header_bytes=settings.ingest_max_header_bytes,
            max_recipients=settings.ingest_max_recipients,
            max_sessions=settings.ingest_max_sessions,
            session_deadline=settings.ingest_session_deadline,
            idle_timeout=settings.ingest_idle_timeout,
            commit_timeout=settings.ingest_commit_timeout,
            directory_timeout=settings.ingest_directory_timeout,
        )


class IngestSession(Session):
    """aiosmtpd's session plus what ingest needs to know about the client."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: str):
        super().__init__(loop)
        self.origin = origin
        self.login: Login | None = None
        #: The reverse DNS lookup of the client, started at its first MAIL (see IngestHandler).
        self.client_name_task: asyncio.Future[str | None] | None = None
        self.started = time.monotonic()

    # aiosmtpd sets this after every successful AUTH and logs a deprecation warning each time; the
    # attribute is kept (aiosmtpd writes it) without the noise.
    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class IngestEnvelope(Envelope):
    """aiosmtpd's envelope plus the resolved recipients and the checked DATA."""

    def __init__(self) -> None:
        super().__init__()
        #: Where the message goes: local recipients as their primary mailbox, external ones as given.
        self.mailboxes: list[str] = []
        self.mailbox_bytes = 0
        self.collector: DataCollector | None = None


class SessionTracker:
    """The sessions of one ingest process: admission, draining at shutdown, commits in flight."""

    def __init__(self, max_sessions: int):
        self.max_sessions = max_sessions
        self.sessions: set[IngestSMTP] = set()
        self.commits: set[asyncio.Task[Any]] = set()
        self.draining = False

    def admit(self, session: IngestSMTP) -> bool:
        if self.draining or len(self.sessions) >= self.max_sessions:
            return False
        self.sessions.add(session)
        return True


@dataclass
class _PendingLogin:
    """What aiosmtpd's AUTH parsing produced, to be checked by the directory asynchronously.

    `authzid` is PLAIN's authorisation identity (RFC 4616), empty when the client sent none: only the
    webmail's service identity may act for someone else (see IngestHandler.authenticate).
    """

    mechanism: str
    credentials: LoginPassword
    authzid: bytes = b""


class IngestSMTP(SMTP):
    """One SMTP connection on the MX or the submission port (see the module docstring)."""

    def __init__(
        self,
        handler: IngestHandler,
        *,
        origin: str,
        limits: IngestLimits,
        tracker: SessionTracker,
        **kwargs: Any,
    ):
        self.origin = origin
        self.limits = limits
        self.tracker = tracker
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._committing = False
        self._pending_cut: tuple[str, str] | None = None
        self._admitted = False
        self._counted = False
        super().__init__(
            handler,
            data_size_limit=limits.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=limits.idle_timeout,
            ident="ESMTP",
            # AUTH may be tried a few times per session; a client guessing passwords is cut with 421.
            # "*" must be set, or aiosmtpd would cap every other command (RCPT included) at 20.
            command_call_limit={"AUTH": limits.max_auth_attempts, "*": 1_000_000},
            **kwargs,
        )

    # --- session life ---------------------------------------------------------------------------------

    def _create_session(self) -> Session:
        return IngestSession(self.loop, self.origin)

    def _create_envelope(self) -> Envelope:
        return IngestEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # connection_made runs again after STARTTLS
        super().connection_made(transport)
        if not first:
            return
        self._admitted = self.tracker.admit(self)
        if self._admitted:
            self._counted = True
            metrics.SESSIONS.labels(self.origin).inc()
            metrics.SESSIONS_IN_FLIGHT.labels(self.origin).inc()
            self._deadline_handle = self.loop.call_later(self.limits.session_deadline, self._deadline_cb)

    def connection_lost(self, error: Exception | None) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        self.tracker.sessions.discard(self)
        if self._counted:
            self._counted = False
            metrics.SESSIONS_IN_FLIGHT.labels(self.origin).dec()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if not self._admitted:
            reason = codes.SHUTTING_DOWN if self.tracker.draining else codes.TOO_MANY_SESSIONS
            metrics.SESSIONS_CUT.labels(self.origin, "overload").inc()
            await self.push(reason)
            return
        await super()._handle_client()

    def _deadline_cb(self) -> None:
        self.cut(codes.SESSION_DEADLINE, "deadline")

    def _timeout_cb(self) -> None:
        self.cut(codes.IDLE_TIMEOUT, "idle")

    def cut(self, status: str, reason: str) -> None:
        """End the session now with a 421 reply, or right after the reply to a commit in progress."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._committing:
            self._pending_cut = (status, reason)
            return
        log.info("closing SMTP session: %s", reason, extra={"peer": self._peer_ip(), "origin": self.origin})
        metrics.SESSIONS_CUT.labels(self.origin, reason).inc()
        self._writer.write(status.encode("ascii") + b"\r\n")
        self.transport.close()

    @property
    def committing(self) -> bool:
        """True while the message of this session is being stored and published."""
        return self._committing

    @property
    def in_transaction(self) -> bool:
        """True from MAIL until the reply to DATA (a shutdown lets such a session finish first)."""
        envelope = self.envelope
        return self._committing or (envelope is not None and envelope.mail_from is not None)

    def _peer_ip(self) -> str:
        peer = self.session.peer if self.session else None
        return peer[0] if isinstance(peer, tuple) else str(peer)

    # --- addresses ------------------------------------------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address of a MAIL or RCPT argument and the rest of it; (None, None) if it does not parse.

        The same parse as aiosmtpd's own, which also defines a `typing.Protocol` class on every call: two
        class creations per message, about a tenth of ingest's CPU under load (BENCHMARKS.md). The parse
        itself (email's header parser) is remembered per argument (`_parse_path`).
        """
        if not arg:
            return "", ""
        parsed = _parse_path(arg)
        if parsed is None:
            return None, None
        addr, rest = parsed
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

    # --- replies --------------------------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = codes.rewrite(status)
        if self.transport is None or self.transport.is_closing():
            return  # the client is gone (or being cut): nobody to answer
        await super().push(status)
        if isinstance(status, str) and codes.closes_connection(status) and self.transport is not None:
            self.transport.close()

    # --- AUTH (submission) ----------------------------------------------------------------------------

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls this synchronously from auth_PLAIN/auth_LOGIN; defer the real check to
        # _finish_auth, which awaits the directory in a thread.
        return AuthResult(success=False, handled=False, auth_data=_PendingLogin(mechanism, auth_data))

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        # aiosmtpd's own auth_PLAIN drops the authzid, which would let "someone\0camille\0pw" log in
        # as camille silently; this one keeps it, so that it is either honoured (the webmail's service
        # identity) or refused.
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        try:
            authzid, login, password = blob.split(b"\x00")
        except ValueError:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        pending = _PendingLogin("PLAIN", LoginPassword(login, password), authzid)
        return await self._finish_auth(AuthResult(success=False, handled=False, auth_data=pending))

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._finish_auth(await super().auth_LOGIN(server, args))

    async def _finish_auth(self, result: AuthResult) -> AuthResult:
        pending = result.auth_data
        if not isinstance(pending, _PendingLogin):
            return result  # malformed exchange: aiosmtpd already answered
        assert self.session is not None
        status, login = await self.event_handler.authenticate(
            self.session, pending.credentials.login, pending.credentials.password, pending.authzid
        )
        if login is not None and login.ok:
            return AuthResult(success=True, auth_data=login, message=status)
        return AuthResult(success=False, handled=False, message=status)

    # --- DATA -----------------------------------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert isinstance(self.envelope, IngestEnvelope)
        if not self.envelope.rcpt_tos:
            await self.push(codes.NEED_RCPT)
            return
        if arg:
            await self.push(codes.DATA_SYNTAX)
            return
        await self.push(codes.START_DATA)

        collector = DataCollector(self.limits.max_message_bytes, self.limits.max_header_bytes)
        if not await self._read_data(collector):
            return  # connection lost
        if collector.problem is not None:
            log.info(
                "message refused: %s",
                collector.problem,
                extra={"peer": self._peer_ip(), "origin": self.origin, "size": collector.size},
            )
            metrics.MESSAGES.labels(self.origin, "refused", metrics.code_of(collector.problem)).inc()
            self._set_post_data_state()
            await self.push(collector.problem)
            return

        self.envelope.collector = collector
        self.envelope.original_content = self.envelope.content = collector.content()
        # The commit runs in a task of its own: if the client disconnects now, the session's
        # coroutine is cancelled but the store and publish finish consistently.
        commit = self.loop.create_task(self._call_handler_hook("DATA"))
        self.tracker.commits.add(commit)
        commit.add_done_callback(self.tracker.commits.discard)
        self._committing = True
        try:
            status = await asyncio.shield(commit)
        finally:
            self._committing = False
        self._set_post_data_state()
        await self.push(codes.OK if status is MISSING else status)
        if self._pending_cut is not None:
            self.cut(*self._pending_cut)
        elif self.tracker.draining:
            # Shutting down: this transaction is done; do not wait for the client's next one.
            self.cut(codes.SHUTTING_DOWN, "shutdown")

    async def _read_data(self, collector: DataCollector) -> bool:
        """Read DATA up to the first CRLF "." CRLF into `collector`; False if the connection was lost.

        Lines are split on CRLF only, so a bare LF or CR stays inside a line, where the collector finds
        it; only a line that is exactly "." CRLF ends the data. To take a few awaits per message rather
        than one per line, each read asks for everything up to the next ".\r\n" (or as much as the
        reader's limit allows); its complete lines go to the collector together, and a partial last line
        waits for the next read. A ".\r\n" that does not start a line is only data.
        """
        partial = b""  # the beginning of a line whose CRLF has not come yet
        continuing = False  # a fragment of the current (over-long) line was fed already
        last_rearm = self.loop.time()
        while self.transport is not None:
            try:
                chunk = await self._reader.readuntil(b".\r\n")
                dot_line = True
            except asyncio.LimitOverrunError as exc:
                chunk = await self._reader.read(exc.consumed)
                dot_line = False
            except asyncio.IncompleteReadError:
                return False
            except asyncio.CancelledError:
                log.info("connection lost during DATA", extra={"peer": self._peer_ip()})
                self._writer.close()
                raise
            data = partial + chunk if partial else chunk
            if dot_line:
                lines = data[:-3]
                if lines.endswith(b"\r\n") or not (lines or continuing):
                    if lines:
                        _feed_complete_lines(collector, lines, continuing)
                    return True
            last_crlf = data.rfind(b"\r\n")
            if last_crlf >= 0:
                complete = last_crlf + 2
                _feed_complete_lines(collector, data[:complete], continuing)
                continuing = False
                partial = data[complete:]
            else:
                partial = data
            if len(partial) > _MAX_PARTIAL_LINE:
                # Longer than any acceptable line: the message is refused, so only look at what is there
                # (keeping a final CR, which may start the line's CRLF) instead of holding all of it.
                keep = len(partial) - 1 if partial.endswith(b"\r") else len(partial)
                collector.feed_fragment(partial[:keep])
                partial = partial[keep:]
                continuing = True
            now = self.loop.time()
            if now - last_rearm >= _IDLE_REARM_SECONDS:
                self._reset_timeout()
                last_rearm = now
        return False


def _feed_complete_lines(collector: DataCollector, lines: bytes, continuing: bool) -> None:
    """Feed `lines` (ending with CRLF); with `continuing`, the first one ends an over-long line whose
    beginning was fed as fragments."""
    if continuing:
        end = lines.index(b"\r\n")
        collector.feed_fragment(lines[:end])
        collector.size += 2
        lines = lines[end + 2 :]
    if lines:
        collector.feed_lines(lines)
