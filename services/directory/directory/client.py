"""Clients of the directory for the other services: `DirectoryClient` (synchronous, thread-safe: one
gRPC channel shared by all threads) and `AsyncDirectoryClient` (asyncio, for the webmail and ingest).

They speak in domain terms and return small dataclasses, so callers never touch protobuf. gRPC errors
become `DirectoryInvalidInput` (the French message is in `str(error)`), `DirectoryNotFound`,
`DirectoryConflict`, `DirectoryDenied`, or `DirectoryUnavailable` (server down or deadline exceeded: a
caller such as ingest answers 451, never 5xx).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from common.protos import directory_pb2 as pb
from common.protos import directory_pb2_grpc as pb_grpc


class DirectoryClientError(Exception):
    """Base of the client's errors; `str()` is the server's (French) message."""


class DirectoryInvalidInput(DirectoryClientError):
    pass


class DirectoryNotFound(DirectoryClientError):
    pass


class DirectoryConflict(DirectoryClientError):
    pass


class DirectoryDenied(DirectoryClientError):
    pass


class DirectoryUnavailable(DirectoryClientError):
    pass


_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: DirectoryInvalidInput,
    grpc.StatusCode.NOT_FOUND: DirectoryNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: DirectoryConflict,
    grpc.StatusCode.PERMISSION_DENIED: DirectoryDenied,
}


def _error(exc: grpc.RpcError) -> DirectoryClientError:
    code = exc.code() if hasattr(exc, "code") else None
    return _ERRORS.get(code, DirectoryUnavailable)(exc.details() if hasattr(exc, "details") else str(exc))


@dataclass(frozen=True)
class Account:
    account_id: str
    address: str
    aliases: tuple[str, ...]
    first_name: str
    last_name: str
    display_name: str
    status: str  # "active", "suspended", "deleted"
    must_change_password: bool
    establishment_uai: str
    establishment_name: str
    departement: str
    function: str
    quota_bytes: int
    session_epoch: int
    synthetic: bool


_STATUS_NAMES = {pb.ACTIVE: "active", pb.SUSPENDED: "suspended", pb.DELETED: "deleted"}


def _account(msg: pb.Account, present: bool) -> Account | None:
    if not present:
        return None
    return Account(
        account_id=msg.account_id,
        address=msg.address,
        aliases=tuple(msg.aliases),
        first_name=msg.first_name,
        last_name=msg.last_name,
        display_name=msg.display_name,
        status=_STATUS_NAMES.get(msg.status, ""),
        must_change_password=msg.must_change_password,
        establishment_uai=msg.establishment_uai,
        establishment_name=msg.establishment_name,
        departement=msg.departement,
        function=msg.function,
        quota_bytes=msg.quota_bytes,
        session_epoch=msg.session_epoch,
        synthetic=msg.synthetic,
    )


@dataclass(frozen=True)
class AuthResult:
    """`result` is one of OK, BAD_CREDENTIALS, PASSWORD_CHANGE_REQUIRED, ACCOUNT_SUSPENDED,
    ACCOUNT_DELETED, MAINTENANCE, THROTTLED; `message` is French, ready to show."""

    result: str
    message: str
    account: Account | None
    retry_after_seconds: int = 0

    @property
    def ok(self) -> bool:
        return self.result == "OK"


@dataclass(frozen=True)
class PasswordChange:
    ok: bool
    auth_result: str
    message: str
    problems: tuple[str, ...]
    account: Account | None
    retry_after_seconds: int = 0


@dataclass(frozen=True)
class Recipient:
    """`state` is DELIVERABLE, UNKNOWN, SUSPENDED or DELETED."""

    state: str
    account_id: str = ""
    mailbox_address: str = ""
    quota_bytes: int = 0
    display_name: str = ""

    @property
    def deliverable(self) -> bool:
        return self.state == "DELIVERABLE"


_RECIPIENT_NAMES = {
    pb.DELIVERABLE: "DELIVERABLE",
    pb.UNKNOWN: "UNKNOWN",
    pb.RECIPIENT_SUSPENDED: "SUSPENDED",
    pb.RECIPIENT_DELETED: "DELETED",
}


@dataclass(frozen=True)
class Contact:
    account_id: str
    address: str
    display_name: str
    establishment_name: str
    departement: str
    function_label: str


@dataclass(frozen=True)
class SearchPage:
    contacts: tuple[Contact, ...]
    next_page_token: str
    total: int


@dataclass(frozen=True)
class SessionState:
    exists: bool
    status: str
    session_epoch: int
    must_change_password: bool
    maintenance: bool


@dataclass(frozen=True)
class Maintenance:
    enabled: bool
    message: str
    since: str


@dataclass(frozen=True)
class ImportLine:
    line: int
    outcome: str  # CREATED, UPDATED, UNCHANGED, REJECTED
    reason: str
    address: str


@dataclass
class NewAccount:
    """An account to create (as an operator types it or an HR export gives it)."""

    last_name: str
    first_name: str
    numen: str = field(repr=False)
    birth_date: str
    establishment_uai: str
    function: str
    recovery_address: str
    line: int = 0

    def message(self) -> pb.NewAccount:
        return pb.NewAccount(
            last_name=self.last_name,
            first_name=self.first_name,
            numen=self.numen,
            birth_date=self.birth_date,
            establishment_uai=self.establishment_uai,
            function=self.function,
            recovery_address=self.recovery_address,
            line=self.line,
        )


_VERBS = {
    "suspend": pb.SUSPEND,
    "unsuspend": pb.UNSUSPEND,
    "delete": pb.DELETE,
    "restore": pb.RESTORE,
    "reset-first-login": pb.RESET_FIRST_LOGIN,
}


def _search_page(reply: pb.SearchReply) -> SearchPage:
    return SearchPage(
        contacts=tuple(
            Contact(
                c.account_id, c.address, c.display_name, c.establishment_name, c.departement, c.function_label
            )
            for c in reply.contacts
        ),
        next_page_token=reply.next_page_token,
        total=reply.total,
    )


class _Requests:
    """Request builders and reply converters shared by both clients."""

    @staticmethod
    def auth(reply: pb.AuthenticateReply) -> AuthResult:
        return AuthResult(
            pb.AuthResult.Name(reply.result),
            reply.message,
            _account(reply.account, reply.HasField("account")),
            reply.retry_after_seconds,
        )

    @staticmethod
    def change(reply: pb.ChangePasswordReply) -> PasswordChange:
        return PasswordChange(
            reply.ok,
            pb.AuthResult.Name(reply.auth_result),
            reply.message,
            tuple(reply.problems),
            _account(reply.account, reply.HasField("account")),
            reply.retry_after_seconds,
        )

    @staticmethod
    def recipient(reply: pb.ResolveRecipientReply) -> Recipient:
        return Recipient(
            _RECIPIENT_NAMES.get(reply.state, "UNKNOWN"),
            reply.account_id,
            reply.mailbox_address,
            reply.quota_bytes,
            reply.display_name,
        )

    @staticmethod
    def session(reply: pb.SessionState) -> SessionState:
        return SessionState(
            reply.exists,
            _STATUS_NAMES.get(reply.status, ""),
            reply.session_epoch,
            reply.must_change_password,
            reply.maintenance,
        )

    @staticmethod
    def maintenance(reply: pb.MaintenanceState) -> Maintenance:
        return Maintenance(reply.enabled, reply.message, reply.since)


class DirectoryClient:
    """Synchronous client; safe to share between threads. `timeout` is each call's deadline, seconds."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 10.0,
        admin_token: str | None = None,
        operator: str = "",
    ):
        from common.config import get_settings

        settings = get_settings()
        self.address = address or settings.directory_address
        self.timeout = timeout
        token = settings.directory_admin_token if admin_token is None else admin_token
        self._metadata = (("x-admin-token", token),) if token else ()
        self.operator = operator
        self._channel = grpc.insecure_channel(self.address)
        self._stub = pb_grpc.DirectoryStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> DirectoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(
                request, timeout=timeout or self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise _error(exc) from None

    # --- authentication and recovery ---

    def authenticate(
        self, identifier: str, password: str, client_address: str = "", service: str = ""
    ) -> AuthResult:
        return _Requests.auth(
            self._call(
                "Authenticate",
                pb.AuthenticateRequest(
                    identifier=identifier, password=password, client_address=client_address, service=service
                ),
            )
        )

    def change_password(
        self, identifier: str, current_password: str, new_password: str, client_address: str = ""
    ) -> PasswordChange:
        return _Requests.change(
            self._call(
                "ChangePassword",
                pb.ChangePasswordRequest(
                    identifier=identifier,
                    current_password=current_password,
                    new_password=new_password,
                    client_address=client_address,
                ),
            )
        )

    def check_password_policy(
        self, password: str, first_name: str = "", last_name: str = "", identifier: str = ""
    ) -> tuple[bool, tuple[str, ...], str]:
        reply = self._call(
            "CheckPasswordPolicy",
            pb.CheckPasswordPolicyRequest(
                password=password, first_name=first_name, last_name=last_name, identifier=identifier
            ),
        )
        return reply.acceptable, tuple(reply.problems), reply.rules

    def session_state(self, account_id: str) -> SessionState:
        return _Requests.session(
            self._call("GetSessionState", pb.GetSessionStateRequest(account_id=account_id))
        )

    def request_password_reset(
        self,
        *,
        numen: str,
        birth_date: str,
        identifier: str = "",
        last_name: str = "",
        first_name: str = "",
        client_address: str = "",
    ) -> tuple[str, int]:
        reply = self._call(
            "RequestPasswordReset",
            pb.RequestPasswordResetRequest(
                identifier=identifier,
                last_name=last_name,
                first_name=first_name,
                numen=numen,
                birth_date=birth_date,
                client_address=client_address,
            ),
        )
        return reply.message, reply.retry_after_seconds

    def complete_password_reset(
        self, token: str, new_password: str, client_address: str = ""
    ) -> tuple[bool, str, tuple[str, ...]]:
        reply = self._call(
            "CompletePasswordReset",
            pb.CompletePasswordResetRequest(
                token=token, new_password=new_password, client_address=client_address
            ),
        )
        return reply.ok, reply.message, tuple(reply.problems)

    # --- lookups ---

    def resolve_recipient(self, address: str) -> Recipient:
        return _Requests.recipient(
            self._call("ResolveRecipient", pb.ResolveRecipientRequest(address=address))
        )

    def search(
        self,
        query: str = "",
        *,
        establishment_uai: str = "",
        departement: str = "",
        function: str = "",
        page_size: int = 20,
        page_token: str = "",
    ) -> SearchPage:
        return _search_page(
            self._call(
                "SearchAddressBook",
                pb.SearchRequest(
                    query=query,
                    establishment_uai=establishment_uai,
                    departement=departement,
                    function=function,
                    page_size=page_size,
                    page_token=page_token,
                ),
            )
        )

    def contact_card(self, identifier: str) -> pb.ContactCard | None:
        request = (
            pb.GetContactCardRequest(account_id=identifier)
            if "@" not in identifier
            else pb.GetContactCardRequest(address=identifier)
        )
        card = self._call("GetContactCard", request)
        return card if card.found else None

    def maintenance(self) -> Maintenance:
        return _Requests.maintenance(self._call("GetMaintenance", pb.GetMaintenanceRequest()))

    def reference(self) -> pb.ReferenceData:
        return self._call("ListReference", pb.ListReferenceRequest())

    # --- administration ---

    def create_account(self, account: NewAccount) -> tuple[bool, str, Account | None]:
        reply = self._call(
            "CreateAccount", pb.CreateAccountRequest(account=account.message(), operator=self.operator)
        )
        return reply.created, reply.message, _account(reply.account, reply.HasField("account"))

    def import_accounts(self, accounts: list[NewAccount], source: str = "") -> list[ImportLine]:
        reply = self._call(
            "ImportAccounts",
            pb.ImportAccountsRequest(
                accounts=[a.message() for a in accounts], operator=self.operator, source=source
            ),
            timeout=600,
        )
        return [
            ImportLine(r.line, pb.ImportOutcome.Name(r.outcome), r.reason, r.address) for r in reply.results
        ]

    def admin(self, verb: str, identifier: str, reason: str = "") -> tuple[str, Account | None]:
        """verb: suspend, unsuspend, delete, restore, reset-first-login."""
        reply = self._call(
            "AdminAction",
            pb.AdminActionRequest(
                verb=_VERBS[verb], identifier=identifier, reason=reason, operator=self.operator
            ),
        )
        return reply.message, _account(reply.account, reply.HasField("account"))

    def add_alias(self, identifier: str, alias: str) -> tuple[str, Account | None]:
        reply = self._call(
            "AddAlias", pb.AddAliasRequest(identifier=identifier, alias=alias, operator=self.operator)
        )
        return reply.message, _account(reply.account, reply.HasField("account"))

    def set_maintenance(self, enabled: bool, message: str = "") -> Maintenance:
        return _Requests.maintenance(
            self._call(
                "SetMaintenance",
                pb.SetMaintenanceRequest(enabled=enabled, message=message, operator=self.operator),
            )
        )

    def purge_deleted(self, include_unexpired: bool = False) -> tuple[int, int]:
        reply = self._call(
            "PurgeDeleted",
            pb.PurgeDeletedRequest(operator=self.operator, include_unexpired=include_unexpired),
        )
        return reply.purged_accounts, reply.purged_tokens

    def audit(self, account_id: str = "", event_prefix: str = "", limit: int = 50) -> list[pb.AuditEntry]:
        reply = self._call(
            "ListAudit",
            pb.ListAuditRequest(account_id=account_id, event_prefix=event_prefix, limit=limit),
            timeout=60,
        )
        return list(reply.entries)

    def load_establishments(self, establishments: list[dict[str, Any]]) -> int:
        reply = self._call(
            "LoadReference",
            pb.LoadReferenceRequest(
                establishments=[pb.Establishment(**e) for e in establishments], operator=self.operator
            ),
            timeout=120,
        )
        return reply.establishments

    def reload_address_book(self) -> int:
        """Make the server reload its address book now; returns its size."""
        reply = self._call(
            "ReloadAddressBook", pb.ReloadAddressBookRequest(operator=self.operator), timeout=120
        )
        return reply.entries


class AsyncDirectoryClient:
    """asyncio client for the hot paths (authentication, recipients, search, sessions, recovery)."""

    def __init__(self, address: str | None = None, *, timeout: float = 10.0):
        from common.config import get_settings

        self.address = address or get_settings().directory_address
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(self.address)
        self._stub = pb_grpc.DirectoryStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    async def authenticate(
        self, identifier: str, password: str, client_address: str = "", service: str = ""
    ) -> AuthResult:
        return _Requests.auth(
            await self._call(
                "Authenticate",
                pb.AuthenticateRequest(
                    identifier=identifier, password=password, client_address=client_address, service=service
                ),
            )
        )

    async def change_password(
        self, identifier: str, current_password: str, new_password: str, client_address: str = ""
    ) -> PasswordChange:
        return _Requests.change(
            await self._call(
                "ChangePassword",
                pb.ChangePasswordRequest(
                    identifier=identifier,
                    current_password=current_password,
                    new_password=new_password,
                    client_address=client_address,
                ),
            )
        )

    async def resolve_recipient(self, address: str) -> Recipient:
        return _Requests.recipient(
            await self._call("ResolveRecipient", pb.ResolveRecipientRequest(address=address))
        )

    async def search(
        self,
        query: str = "",
        *,
        establishment_uai: str = "",
        departement: str = "",
        function: str = "",
        page_size: int = 20,
        page_token: str = "",
    ) -> SearchPage:
        return _search_page(
            await self._call(
                "SearchAddressBook",
                pb.SearchRequest(
                    query=query,
                    establishment_uai=establishment_uai,
                    departement=departement,
                    function=function,
                    page_size=page_size,
                    page_token=page_token,
                ),
            )
        )

    async def session_state(self, account_id: str) -> SessionState:
        return _Requests.session(
            await self._call("GetSessionState", pb.GetSessionStateRequest(account_id=account_id))
        )

    async def maintenance(self) -> Maintenance:
        return _Requests.maintenance(await self._call("GetMaintenance", pb.GetMaintenanceRequest()))

    async def request_password_reset(
        self,
        *,
        numen: str,
        birth_date: str,
        identifier: str = "",
        last_name: str = "",
        first_name: str = "",
        client_address: str = "",
    ) -> tuple[str, int]:
        reply = await self._call(
            "RequestPasswordReset",
            pb.RequestPasswordResetRequest(
                identifier=identifier,
                last_name=last_name,
                first_name=first_name,
                numen=numen,
                birth_date=birth_date,
                client_address=client_address,
            ),
        )
        return reply.message, reply.retry_after_seconds

    async def complete_password_reset(
        self, token: str, new_password: str, client_address: str = ""
    ) -> tuple[bool, str, tuple[str, ...]]:
        reply = await self._call(
            "CompletePasswordReset",
            pb.CompletePasswordResetRequest(
                token=token, new_password=new_password, client_address=client_address
            ),
        )
        return reply.ok, reply.message, tuple(reply.problems)

    async def check_password_policy(
        self, password: str, first_name: str = "", last_name: str = "", identifier: str = ""
    ) -> tuple[bool, tuple[str, ...], str]:
        """(acceptable, French problems, French summary of the rules) — live feedback in the webmail."""
        reply = await self._call(
            "CheckPasswordPolicy",
            pb.CheckPasswordPolicyRequest(
                password=password, first_name=first_name, last_name=last_name, identifier=identifier
            ),
        )
        return reply.acceptable, tuple(reply.problems), reply.rules

    async def contact_card(self, identifier: str) -> pb.ContactCard | None:
        """The contact card of an account id or an address, or None."""
        request = (
            pb.GetContactCardRequest(account_id=identifier)
            if "@" not in identifier
            else pb.GetContactCardRequest(address=identifier)
        )
        card = await self._call("GetContactCard", request)
        return card if card.found else None

    async def reference(self) -> pb.ReferenceData:
        """Départements (with their DSDEN contacts), functions, number of establishments."""
        return await self._call("ListReference", pb.ListReferenceRequest())
