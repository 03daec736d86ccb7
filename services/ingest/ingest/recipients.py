"""The directory as ingest sees it: who a recipient is, and whether a submission login is good.

`RecipientDirectory` is the small contract the SMTP handler depends on; it is synchronous and blocking
(gRPC calls), so the handler runs it in a thread executor. Two implementations:

- `DirectoryRecipients`, over the directory service's gRPC client (`directory.client.DirectoryClient`);
- `StaticDirectory`, an in-memory table for unit and integration tests (no production code uses it).

`CachedRecipients` wraps either and remembers deliverable recipients for a few seconds (`python -m
ingest` uses it): a burst of mail to the same people asks the directory once per address, not once per
RCPT. Only "local" answers are kept, so a new account is never refused from the cache; a suspension or a
deletion reaches the MX within `RECIPIENT_CACHE_SECONDS`.

Addresses outside MAIL_DOMAIN are "external" without asking the directory: the academy's directory knows
only its own staff. A directory that cannot answer raises `DirectoryUnavailable`, which the handler turns
into a temporary SMTP reply, never a permanent one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

RecipientStatus = Literal["local", "unknown", "suspended", "deleted", "external"]

#: Reasons of a refused login that say "try again later", not "your password is wrong".
TEMPORARY_LOGIN_REASONS = frozenset({"maintenance", "throttled", "unavailable"})


class DirectoryUnavailable(RuntimeError):
    """The directory did not answer (down, timeout, unexpected reply)."""


@dataclass(frozen=True)
class Resolution:
    """What an envelope recipient is: `mailbox` is the primary address of a local recipient."""

    status: RecipientStatus
    mailbox: str | None = None


@dataclass(frozen=True)
class Login:
    """The outcome of a submission login; `account` is the account's primary address when `ok`."""

    ok: bool
    account: str | None = None
    reason: str = ""

    @property
    def temporary(self) -> bool:
        """True when the refusal is not the user's credentials (maintenance, throttling, outage)."""
        return not self.ok and self.reason in TEMPORARY_LOGIN_REASONS


class RecipientDirectory(Protocol):
    """What ingest needs from the directory. `resolve` and `authenticate` block: call them from a
    thread; `known` never does."""

    def known(self, address: str) -> Resolution | None:
        """The answer for `address` when it needs no directory call (an outside address, a remembered
        one), else None; never blocks, so the SMTP handler asks it on the event loop first."""
        ...

    def resolve(self, address: str) -> Resolution:
        """Classify an envelope recipient (raises DirectoryUnavailable)."""
        ...

    def authenticate(self, username: str, password: str, client_ip: str) -> Login:
        """Check submission credentials (raises DirectoryUnavailable)."""
        ...


def split_address(address: str) -> tuple[str, str]:
    """(local part, lower-case domain) of an address; the domain is "" when there is none."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.rstrip(".").lower()


def is_local_domain(address: str, mail_domain: str) -> bool:
    """True when `address` belongs to the academy's mail domain."""
    return split_address(address)[1] == mail_domain.rstrip(".").lower()


def outside_answer(address: str, mail_domain: str) -> Resolution | None:
    """The answer for an address outside the academy's mail domain, which needs no directory call
    ("external"); None for a local address, which only the directory can answer."""
    return None if is_local_domain(address, mail_domain) else Resolution("external", address)


class DirectoryRecipients:
    """`RecipientDirectory` over the directory's gRPC client.

    `client` is a `directory.client.DirectoryClient` (thread-safe, synchronous, each call bounded by its
    `timeout`). Its replies are small dataclasses: `Recipient` (`state` DELIVERABLE, UNKNOWN, SUSPENDED
    or DELETED; `mailbox_address`) and `AuthResult` (`result` OK, BAD_CREDENTIALS…; `account.address`).
    Raw protobuf replies (enum numbers) are understood too. Any exception the client raises (its
    `DirectoryUnavailable`, a deadline, a broken channel) becomes our `DirectoryUnavailable`.
    """

    #: Recipient states (the client's names, and the protobuf enum's) -> our statuses.
    _STATES: Mapping[str, RecipientStatus] = {
        "DELIVERABLE": "local",
        "UNKNOWN": "unknown",
        "SUSPENDED": "suspended",
        "DELETED": "deleted",
        "RECIPIENT_SUSPENDED": "suspended",
        "RECIPIENT_DELETED": "deleted",
    }
    #: AuthenticateReply.result names -> Login.reason.
    _RESULTS: Mapping[str, str] = {
        "OK": "ok",
        "BAD_CREDENTIALS": "bad_credentials",
        "PASSWORD_CHANGE_REQUIRED": "password_change_required",
        "ACCOUNT_SUSPENDED": "suspended",
        "ACCOUNT_DELETED": "deleted",
        "MAINTENANCE": "maintenance",
        "THROTTLED": "throttled",
    }

    def __init__(self, client: Any, mail_domain: str):
        self._client = client
        self._mail_domain = mail_domain

    def known(self, address: str) -> Resolution | None:
        return outside_answer(address, self._mail_domain)

    def resolve(self, address: str) -> Resolution:
        if (outside := outside_answer(address, self._mail_domain)) is not None:
            return outside
        try:
            reply = self._client.resolve_recipient(address)
        except Exception as exc:  # any client failure means "no answer", never "unknown"
            raise DirectoryUnavailable(f"resolve_recipient failed: {type(exc).__name__}: {exc}") from exc
        state = _enum_name(reply, "state")
        status = self._STATES.get(state)
        if status is None:
            raise DirectoryUnavailable(f"unexpected recipient state {state!r}")
        mailbox = getattr(reply, "mailbox_address", "") or None
        if status == "local" and not mailbox:
            raise DirectoryUnavailable("a deliverable recipient came without its mailbox address")
        return Resolution(status, mailbox.lower() if mailbox else None)

    def authenticate(self, username: str, password: str, client_ip: str) -> Login:
        try:
            reply = self._client.authenticate(username, password, client_ip, service="smtp-submission")
        except Exception as exc:  # an outage is a temporary failure, not bad credentials
            raise DirectoryUnavailable(f"authenticate failed: {type(exc).__name__}") from exc
        reason = self._RESULTS.get(_enum_name(reply, "result"), "bad_credentials")
        account = getattr(getattr(reply, "account", None), "address", "") or None
        if reason == "ok" and account:
            return Login(True, account.lower(), "ok")
        return Login(False, None, reason if reason != "ok" else "bad_credentials")


def _enum_name(reply: Any, field_name: str) -> str:
    """The name of a protobuf enum field (also accepts a plain string, as a hand-made reply has)."""
    value = getattr(reply, field_name, None)
    if isinstance(value, str):
        return value
    descriptor = getattr(reply, "DESCRIPTOR", None)
    if descriptor is not None and isinstance(value, int):
        enum_type = descriptor.fields_by_name[field_name].enum_type
        return enum_type.values_by_number[value].name
    return str(value)


#: How long ingest trusts a "local" resolution before asking the directory again.
RECIPIENT_CACHE_SECONDS = 10.0
#: At most this many addresses are remembered (least recently used ones go first).
RECIPIENT_CACHE_SIZE = 10_000


class CachedRecipients:
    """A `RecipientDirectory` that remembers deliverable recipients for `ttl` seconds (thread-safe).

    Unknown, suspended and deleted addresses, and failures, are never cached: they are asked again each
    time, so that a refusal is always the directory's current answer and an account created a moment ago
    is accepted at once. Logins are never cached.
    """

    def __init__(
        self,
        directory: RecipientDirectory,
        ttl: float = RECIPIENT_CACHE_SECONDS,
        size: int = RECIPIENT_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._directory = directory
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, Resolution]] = OrderedDict()

    def known(self, address: str) -> Resolution | None:
        """The remembered answer for `address` if it is still fresh, else what the wrapped directory
        knows without a call (an outside address), else None."""
        return self._remembered(address) or self._directory.known(address)

    def _remembered(self, address: str) -> Resolution | None:
        key = address.lower()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                if cached[0] > now:
                    self._cache.move_to_end(key)
                    return cached[1]
                del self._cache[key]
        return None

    def resolve(self, address: str) -> Resolution:
        cached = self._remembered(address)
        if cached is not None:
            return cached
        key = address.lower()
        now = self._clock()
        resolution = self._directory.resolve(address)
        if resolution.status == "local":
            with self._lock:
                self._cache[key] = (now + self._ttl, resolution)
                self._cache.move_to_end(key)
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return resolution

    def authenticate(self, username: str, password: str, client_ip: str) -> Login:
        return self._directory.authenticate(username, password, client_ip)


@dataclass
class StaticDirectory:
    """An in-memory directory for tests: mailboxes, aliases, suspended and deleted addresses, logins.

    `fail` makes every call raise DirectoryUnavailable, to test the temporary replies.
    """

    mail_domain: str
    mailboxes: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)
    suspended: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    passwords: dict[str, str] = field(default_factory=dict)
    fail: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)

    def known(self, address: str) -> Resolution | None:
        return outside_answer(address, self.mail_domain)

    def resolve(self, address: str) -> Resolution:
        if (outside := outside_answer(address, self.mail_domain)) is not None:
            return outside
        self.calls.append(("resolve", address))
        if self.fail:
            raise DirectoryUnavailable("directory down (test)")
        key = address.lower()
        key = self.aliases.get(key, key)
        if key in self.deleted:
            return Resolution("deleted")
        if key in self.suspended:
            return Resolution("suspended")
        if key in self.mailboxes:
            return Resolution("local", key)
        return Resolution("unknown")

    def authenticate(self, username: str, password: str, client_ip: str) -> Login:
        self.calls.append(("authenticate", username))
        if self.fail:
            raise DirectoryUnavailable("directory down (test)")
        account = username.lower()
        if "@" not in account:
            account = f"{account}@{self.mail_domain}"
        if self.passwords.get(account) == password and account in self.mailboxes:
            return Login(True, account, "ok")
        return Login(False, None, "bad_credentials")
