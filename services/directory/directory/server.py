"""The gRPC server (grpc.aio) in front of `Directory`.

Each RPC runs the synchronous domain method in a thread pool (pymongo and argon2 block; argon2 releases
the GIL), maps domain errors to gRPC status codes (InvalidInput → INVALID_ARGUMENT, NotFound → NOT_FOUND,
Conflict → FAILED_PRECONDITION, with the French message as details), and records its latency. A refused
login is answered late by the throttle's tarpit with `asyncio.sleep`, which holds no thread.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from prometheus_client import Histogram

from common.protos import directory_pb2 as pb
from common.protos import directory_pb2_grpc as pb_grpc
from directory import messages
from directory.exceptions import Conflict, InvalidInput, NotFound
from directory.importer import validate_request
from directory.reference import DEPARTEMENTS, FUNCTIONS
from directory.service import Directory

log = logging.getLogger(__name__)

RPC_SECONDS = Histogram(
    "directory_rpc_seconds",
    "Latency of directory RPCs.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_STATUS = {"active": pb.ACTIVE, "suspended": pb.SUSPENDED, "deleted": pb.DELETED}
_RECIPIENT = {
    "DELIVERABLE": pb.DELIVERABLE,
    "UNKNOWN": pb.UNKNOWN,
    "SUSPENDED": pb.RECIPIENT_SUSPENDED,
    "DELETED": pb.RECIPIENT_DELETED,
}
_OUTCOME = {"CREATED": pb.CREATED, "UPDATED": pb.UPDATED, "UNCHANGED": pb.UNCHANGED, "REJECTED": pb.REJECTED}

T = TypeVar("T")


def account_message(doc: dict[str, Any] | None, directory: Directory | None = None) -> pb.Account | None:
    """The proto form of an account document (no secret ever leaves: no hash, no birth date)."""
    if doc is None:
        return None
    est = directory.establishment(doc.get("establishment_uai", "")) if directory else None
    return pb.Account(
        account_id=doc["_id"],
        address=doc["address"],
        aliases=doc.get("aliases", []),
        first_name=doc["first_name"],
        last_name=doc["last_name"],
        display_name=doc["display_name"],
        status=_STATUS.get(doc.get("status", ""), pb.ACCOUNT_STATUS_UNSPECIFIED),
        must_change_password=bool(doc.get("must_change_password")),
        establishment_uai=doc.get("establishment_uai", ""),
        establishment_name=(est or {}).get("name", ""),
        departement=doc.get("departement", ""),
        function=doc.get("function", ""),
        quota_bytes=int(doc.get("quota_bytes", 0)),
        session_epoch=int(doc.get("session_epoch", 0)),
        synthetic=bool(doc.get("synthetic")),
    )


class DirectoryServicer(pb_grpc.DirectoryServicer):
    """Maps RPCs to `Directory` methods."""

    def __init__(self, directory: Directory, executor: ThreadPoolExecutor, admin_token: str = ""):
        self.directory = directory
        self.executor = executor
        self.admin_token = admin_token

    async def _run(
        self, context: grpc.aio.ServicerContext, method: str, fn: Callable[..., T], *args: Any
    ) -> T:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, functools.partial(fn, *args))
        except InvalidInput as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except Conflict as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        finally:
            RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
        raise AssertionError("unreachable")  # context.abort raises

    async def _admin(self, context: grpc.aio.ServicerContext) -> None:
        if not self.admin_token:
            return
        given = dict(context.invocation_metadata() or ()).get("x-admin-token", "")
        if not hmac.compare_digest(str(given).encode(), self.admin_token.encode()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, messages.ADMIN_DENIED)

    # --- authentication -------------------------------------------------------------------------------

    async def Authenticate(self, request, context):
        outcome = await self._run(
            context,
            "Authenticate",
            self.directory.authenticate,
            request.identifier,
            request.password,
            request.client_address,
            request.service,
        )
        if outcome.tarpit:
            await asyncio.sleep(outcome.tarpit)
        return pb.AuthenticateReply(
            result=pb.AuthResult.Value(outcome.result),
            message=outcome.message,
            account=account_message(outcome.account, self.directory),
            retry_after_seconds=outcome.retry_after,
        )

    async def ChangePassword(self, request, context):
        result = await self._run(
            context,
            "ChangePassword",
            self.directory.change_password,
            request.identifier,
            request.current_password,
            request.new_password,
            request.client_address,
        )
        auth = result["auth"]
        if auth.tarpit:
            await asyncio.sleep(auth.tarpit)
        return pb.ChangePasswordReply(
            ok=result["ok"],
            auth_result=pb.AuthResult.Value(auth.result),
            problems=result["problems"],
            message=result["message"],
            account=account_message(result["account"], self.directory),
            retry_after_seconds=auth.retry_after,
        )

    async def CheckPasswordPolicy(self, request, context):
        from directory.passwords import RULES

        problems = await self._run(
            context,
            "CheckPasswordPolicy",
            functools.partial(
                self.directory.check_policy,
                request.password,
                first_name=request.first_name,
                last_name=request.last_name,
                identifier=request.identifier,
            ),
        )
        return pb.CheckPasswordPolicyReply(acceptable=not problems, problems=problems, rules=RULES)

    async def GetSessionState(self, request, context):
        state = await self._run(context, "GetSessionState", self.directory.session_state, request.account_id)
        return pb.SessionState(
            exists=state["exists"],
            status=_STATUS.get(state["status"], pb.ACCOUNT_STATUS_UNSPECIFIED),
            session_epoch=state["session_epoch"],
            must_change_password=state["must_change_password"],
            maintenance=state["maintenance"],
        )

    # --- recovery -------------------------------------------------------------------------------------

    async def RequestPasswordReset(self, request, context):
        message, retry_after = await self._run(
            context,
            "RequestPasswordReset",
            functools.partial(
                self.directory.request_reset,
                identifier=request.identifier,
                last_name=request.last_name,
                first_name=request.first_name,
                numen=request.numen,
                birth_date=request.birth_date,
                client_address=request.client_address,
            ),
        )
        return pb.RequestPasswordResetReply(message=message, retry_after_seconds=retry_after)

    async def CompletePasswordReset(self, request, context):
        result = await self._run(
            context,
            "CompletePasswordReset",
            self.directory.complete_reset,
            request.token,
            request.new_password,
            request.client_address,
        )
        return pb.CompletePasswordResetReply(
            ok=result["ok"], message=result["message"], problems=result["problems"]
        )

    # --- lookups --------------------------------------------------------------------------------------

    async def ResolveRecipient(self, request, context):
        resolution = await self._run(context, "ResolveRecipient", self.directory.resolve, request.address)
        doc = resolution.account or {}
        return pb.ResolveRecipientReply(
            state=_RECIPIENT[resolution.state],
            account_id=doc.get("_id", ""),
            mailbox_address=doc.get("address", ""),
            quota_bytes=int(doc.get("quota_bytes", 0)),
            display_name=doc.get("display_name", ""),
        )

    async def SearchAddressBook(self, request, context):
        started = time.perf_counter()
        try:
            offset = int(request.page_token or 0)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Jeton de page invalide.")
        size = request.page_size if 0 < request.page_size <= 100 else 20
        # In memory and fast: no thread hop.
        entries, total = self.directory.address_book.search(
            request.query,
            establishment_uai=request.establishment_uai.strip().upper(),
            departement=request.departement.strip(),
            function=request.function.strip(),
            offset=max(offset, 0),
            limit=size,
        )
        contacts = []
        for e in entries:
            est = self.directory.cached_establishment(e.establishment_uai)
            contacts.append(
                pb.Contact(
                    account_id=e.account_id,
                    address=e.address,
                    display_name=e.display_name,
                    establishment_name=est.get("name", ""),
                    departement=e.departement,
                    function_label=FUNCTIONS.get(e.function, ""),
                )
            )
        next_token = str(offset + size) if offset + size < total else ""
        RPC_SECONDS.labels("SearchAddressBook").observe(time.perf_counter() - started)
        return pb.SearchReply(contacts=contacts, next_page_token=next_token, total=total)

    async def GetContactCard(self, request, context):
        card = await self._run(
            context, "GetContactCard", self.directory.contact_card, request.account_id or request.address
        )
        if card is None:
            return pb.ContactCard(found=False)
        return pb.ContactCard(
            found=True,
            account_id=card["_id"],
            address=card["address"],
            aliases=card.get("aliases", []),
            first_name=card["first_name"],
            last_name=card["last_name"],
            display_name=card["display_name"],
            function_code=card.get("function", ""),
            function_label=card["function_label"],
            establishment_uai=card.get("establishment_uai", ""),
            establishment_name=card["establishment_name"],
            establishment_type=card["establishment_type"],
            commune=card["commune"],
            departement=card.get("departement", ""),
            departement_name=card["departement_name"],
            help_contact=card["help_contact"],
        )

    async def GetMaintenance(self, request, context):
        state = await self._run(context, "GetMaintenance", self.directory.maintenance)
        return _maintenance(state)

    async def ListReference(self, request, context):
        count = await self._run(context, "ListReference", self.directory.establishment_count)
        return pb.ReferenceData(
            departements=[
                pb.Departement(
                    code=d.code,
                    name=d.name,
                    dsden_name=d.dsden_name,
                    dsden_city=d.dsden_city,
                    dsden_phone=d.dsden_phone,
                    dsden_email=d.dsden_email,
                    dsden_postal_address=d.dsden_postal_address,
                    contact_synthetic=d.contact_synthetic,
                )
                for d in DEPARTEMENTS.values()
            ],
            functions=[pb.Function(code=c, label=label) for c, label in FUNCTIONS.items()],
            establishment_count=count,
        )

    # --- administration -------------------------------------------------------------------------------

    async def CreateAccount(self, request, context):
        await self._admin(context)
        a = request.account

        def create():
            req = validate_request(
                last_name=a.last_name,
                first_name=a.first_name,
                numen=a.numen,
                birth_date=a.birth_date,
                establishment_uai=a.establishment_uai,
                function=a.function,
                recovery_address=a.recovery_address,
                line=a.line,
            )
            return self.directory.create_account(req, request.operator, source="CreateAccount")

        result = await self._run(context, "CreateAccount", create)
        message = (
            f"Compte créé : {result.address}"
            if result.outcome == "CREATED"
            else messages.ALREADY_EXISTS.format(address=result.address)
        )
        return pb.CreateAccountReply(
            ok=True,
            created=result.outcome == "CREATED",
            message=message,
            account=account_message(result.account, self.directory),
        )

    async def ImportAccounts(self, request, context):
        await self._admin(context)

        def run():
            results = []
            valid = []
            for a in request.accounts:
                try:
                    valid.append(
                        validate_request(
                            last_name=a.last_name,
                            first_name=a.first_name,
                            numen=a.numen,
                            birth_date=a.birth_date,
                            establishment_uai=a.establishment_uai,
                            function=a.function,
                            recovery_address=a.recovery_address,
                            line=a.line,
                        )
                    )
                except InvalidInput as exc:
                    results.append(pb.ImportLineResult(line=a.line, outcome=pb.REJECTED, reason=str(exc)))
            for r in self.directory.import_accounts(valid, request.operator, request.source):
                results.append(
                    pb.ImportLineResult(
                        line=r.line, outcome=_OUTCOME[r.outcome], reason=r.reason, address=r.address
                    )
                )
            results.sort(key=lambda r: r.line)
            return results

        return pb.ImportAccountsReply(results=await self._run(context, "ImportAccounts", run))

    async def AdminAction(self, request, context):
        await self._admin(context)
        d = self.directory
        verbs = {
            pb.SUSPEND: lambda: d.suspend(request.identifier, request.reason, request.operator),
            pb.UNSUSPEND: lambda: d.unsuspend(request.identifier, request.operator),
            pb.DELETE: lambda: d.delete(request.identifier, request.reason, request.operator),
            pb.RESTORE: lambda: d.restore(request.identifier, request.operator),
            pb.RESET_FIRST_LOGIN: lambda: d.reset_first_login(request.identifier, request.operator),
        }
        action = verbs.get(request.verb)
        if action is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Action inconnue.")
        doc, message = await self._run(context, "AdminAction", action)
        return pb.AdminActionReply(ok=True, message=message, account=account_message(doc, d))

    async def AddAlias(self, request, context):
        await self._admin(context)
        doc = await self._run(
            context, "AddAlias", self.directory.add_alias, request.identifier, request.alias, request.operator
        )
        return pb.AdminActionReply(
            ok=True, message=f"Alias ajouté à {doc['address']}.", account=account_message(doc, self.directory)
        )

    async def SetMaintenance(self, request, context):
        await self._admin(context)
        state = await self._run(
            context,
            "SetMaintenance",
            self.directory.set_maintenance,
            request.enabled,
            request.message,
            request.operator,
        )
        return _maintenance(state)

    async def PurgeDeleted(self, request, context):
        await self._admin(context)
        accounts, tokens = await self._run(
            context, "PurgeDeleted", self.directory.purge, request.operator, request.include_unexpired
        )
        return pb.PurgeDeletedReply(purged_accounts=accounts, purged_tokens=tokens)

    async def ListAudit(self, request, context):
        await self._admin(context)
        entries = await self._run(
            context,
            "ListAudit",
            self.directory.list_audit,
            request.account_id,
            request.event_prefix,
            request.limit or 100,
        )
        return pb.ListAuditReply(
            entries=[
                pb.AuditEntry(
                    at=e["at"].isoformat(),
                    event=e.get("event", ""),
                    actor=e.get("actor", ""),
                    account_id=e.get("account_id", ""),
                    address=e.get("address", ""),
                    client_address=e.get("client_address", ""),
                    outcome=e.get("outcome", ""),
                    details_json=json.dumps(e.get("details", {}), default=str, ensure_ascii=False),
                )
                for e in entries
            ]
        )

    async def LoadReference(self, request, context):
        await self._admin(context)
        rows = [
            {
                "uai": e.uai.strip().upper(),
                "name": e.name,
                "type": e.type,
                "commune": e.commune,
                "departement": e.departement,
                "synthetic": e.synthetic,
            }
            for e in request.establishments
        ]
        for row in rows:
            if row["departement"] not in DEPARTEMENTS:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Département inconnu pour {row['uai']} : {row['departement']}.",
                )
        count = await self._run(
            context, "LoadReference", self.directory.load_establishments, rows, request.operator
        )
        return pb.LoadReferenceReply(establishments=count)

    async def ReloadAddressBook(self, request, context):
        await self._admin(context)
        entries = await self._run(context, "ReloadAddressBook", self.directory.reload_address_book)
        return pb.ReloadAddressBookReply(entries=entries)


def _maintenance(state: dict[str, Any]) -> pb.MaintenanceState:
    since = state.get("since")
    return pb.MaintenanceState(
        enabled=state["enabled"], message=state["message"], since=since.isoformat() if since else ""
    )


class DirectoryServer:
    """A running grpc.aio server; `start()` binds, `stop()` drains and closes."""

    def __init__(
        self,
        directory: Directory,
        address: str,
        *,
        admin_token: str = "",
        workers: int = 16,
        refresh_seconds: int = 60,
    ):
        self.directory = directory
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="directory")
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_DirectoryServicer_to_server(
            DirectoryServicer(directory, self.executor, admin_token), self.server
        )
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        self.refresh_seconds = refresh_seconds
        self._refresher: asyncio.Task | None = None

    async def start(self) -> None:
        """Load the address book, then serve."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.directory.prepare)
        await self.server.start()
        if self.refresh_seconds > 0:
            self._refresher = asyncio.create_task(self._refresh_loop())
        log.info("directory serving", extra={"port": self.port, "entries": len(self.directory.address_book)})

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await loop.run_in_executor(self.executor, self.directory.reload_address_book)
            except Exception:  # a failed reload keeps the previous index
                log.exception("address book reload failed")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls, let running ones finish for `grace` seconds, release the threads."""
        if self._refresher is not None:
            self._refresher.cancel()
        await self.server.stop(grace)
        self.executor.shutdown(wait=False, cancel_futures=True)
