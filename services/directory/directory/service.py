"""The directory's domain logic: accounts, authentication, recovery, administration and lookups.

`Directory` is synchronous and thread-safe; the gRPC server runs its methods in a thread pool. It owns the
database collections (see `store`), the argon2id `Hasher`, the `Throttle`, the in-memory `AddressBook`
and a `Notifier` for the events the notify service turns into mail. Every administrative and
authentication event goes to the audit log, without secrets: the NUMEN, passwords and reset tokens are
never stored in clear, logged, or returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pymongo
from prometheus_client import Counter, Gauge
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.db import utcnow
from directory import messages
from directory.addressbook import AddressBook, Entry
from directory.exceptions import Conflict, InvalidInput, NotFound
from directory.importer import AccountRequest
from directory.normalize import base_local_part, display_name, fold, local_part, tokens
from directory.notifier import PASSWORD_CHANGED, RESET_REQUESTED, NotificationError, Notifier
from directory.passwords import Hasher, check_password, numen_candidates
from directory.reference import DEPARTEMENTS, FUNCTIONS
from directory.store import (
    ACCOUNTS,
    ADDRESS_BOOK_FIELDS,
    ADDRESSES,
    AUDIT,
    ESTABLISHMENTS,
    PERSON_KEYS,
    RESET_TOKENS,
    STATE,
    ensure_directory_indexes,
    person_key,
)
from directory.throttle import Throttle
from directory.validation import looks_like_numen, normalize_numen, parse_birth_date

log = logging.getLogger(__name__)

AUTHENTICATIONS = Counter("directory_authentications_total", "Authentication attempts by result.", ["result"])
RESOLUTIONS = Counter("directory_recipient_resolutions_total", "Recipient resolutions by state.", ["state"])
RESETS = Counter("directory_reset_requests_total", "Password reset requests by outcome.", ["outcome"])
ADDRESS_BOOK_SIZE = Gauge("directory_address_book_entries", "Entries of the in-memory address book.")

ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"
_ADDRESS_LOCAL = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")

# Results of an authentication (names of the proto's AuthResult values).
OK = "OK"
BAD_CREDENTIALS = "BAD_CREDENTIALS"
PASSWORD_CHANGE_REQUIRED = "PASSWORD_CHANGE_REQUIRED"  # noqa: S105 - a result name
ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
ACCOUNT_DELETED = "ACCOUNT_DELETED"
MAINTENANCE = "MAINTENANCE"
THROTTLED = "THROTTLED"


@dataclass
class AuthOutcome:
    """What an authentication concluded; `account` is set for OK and PASSWORD_CHANGE_REQUIRED."""

    result: str
    message: str
    account: dict[str, Any] | None = None
    retry_after: int = 0
    tarpit: float = 0.0
    numen: str | None = field(default=None, repr=False)  # clear NUMEN when it was the credential


@dataclass
class ImportResult:
    """The outcome of one account request: created, updated, unchanged or rejected (with a reason)."""

    line: int
    outcome: str
    reason: str = ""
    address: str = ""
    account: dict[str, Any] | None = None


@dataclass
class Resolution:
    """Where mail for an address goes: state DELIVERABLE, UNKNOWN, SUSPENDED or DELETED."""

    state: str
    account: dict[str, Any] | None = None


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat() if value else ""


class Directory:
    """The directory over one database."""

    def __init__(
        self,
        db: Database,
        *,
        hasher: Hasher | None = None,
        throttle: Throttle | None = None,
        notifier: Notifier | None = None,
        mail_domain: str | None = None,
        public_url: str | None = None,
        reset_token_ttl: int | None = None,
        retention_days: int | None = None,
        default_quota: int | None = None,
        clock: Any = None,
    ):
        from common.config import get_settings

        settings = get_settings()
        self.db = db
        self.hasher = hasher or Hasher.from_settings()
        self.throttle = throttle or Throttle()
        if notifier is None:
            from directory.notifier import default_notifier

            notifier = default_notifier()
        self.notifier = notifier
        self.domain = (mail_domain or settings.mail_domain).lower()
        self.public_url = (public_url or settings.public_url).rstrip("/")
        self.reset_token_ttl = reset_token_ttl or settings.reset_token_ttl
        self.retention_days = (
            retention_days if retention_days is not None else settings.deletion_retention_days
        )
        self.default_quota = default_quota or settings.default_quota_bytes
        self._now = clock or utcnow
        self.accounts = db[ACCOUNTS]
        self.addresses = db[ADDRESSES]
        self.person_keys = db[PERSON_KEYS]
        self.tokens = db[RESET_TOKENS]
        self.establishments = db[ESTABLISHMENTS]
        self.state = db[STATE]
        self.audit_log = db[AUDIT]
        self.address_book = AddressBook()
        self._maintenance_cache: tuple[float, dict[str, Any]] | None = None
        self._establishment_cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # --- start-up -----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create indexes and load the address book."""
        ensure_directory_indexes(self.db)
        self.reload_address_book()

    def reload_address_book(self) -> int:
        """Rebuild the in-memory address book from the database; returns its size."""
        self._establishment_cache = {e["_id"]: e for e in self.establishments.find()}
        entries = []
        for doc in self.accounts.find({}, ADDRESS_BOOK_FIELDS):
            if doc.get("status") == ACTIVE:
                entries.append(self._entry(doc))
        self.address_book.replace_all(entries)
        ADDRESS_BOOK_SIZE.set(len(self.address_book))
        return len(self.address_book)

    @staticmethod
    def _entry(doc: dict[str, Any]) -> Entry:
        return Entry(
            account_id=doc["_id"],
            address=doc["address"],
            display_name=doc["display_name"],
            sort_key=doc["sort_key"],
            words=tuple(doc.get("tokens", ())),
            establishment_uai=doc.get("establishment_uai", ""),
            departement=doc.get("departement", ""),
            function=doc.get("function", ""),
        )

    def _index(self, doc: dict[str, Any]) -> None:
        if doc.get("status") == ACTIVE:
            self.address_book.upsert(self._entry(doc))
        else:
            self.address_book.remove(doc["_id"])
        ADDRESS_BOOK_SIZE.set(len(self.address_book))

    # --- audit ----------------------------------------------------------------------------------------

    def audit(
        self,
        event: str,
        *,
        actor: str = "",
        account: dict[str, Any] | None = None,
        address: str = "",
        client_address: str = "",
        outcome: str = "",
        **details: Any,
    ) -> None:
        """Append an event to the audit log. Never pass a secret in `details`."""
        entry = {
            "at": self._now(),
            "event": event,
            "actor": actor,
            "account_id": account["_id"] if account else "",
            "address": account["address"] if account else address,
            "client_address": client_address,
            "outcome": outcome,
            "details": details,
        }
        try:
            self.audit_log.insert_one(entry)
        except pymongo.errors.PyMongoError:
            log.exception("audit entry could not be written", extra={"event": event})

    def list_audit(
        self, account_id: str = "", event_prefix: str = "", limit: int = 100
    ) -> list[dict[str, Any]]:
        """The latest audit entries, newest first, optionally for one account or event family."""
        query: dict[str, Any] = {}
        if account_id:
            query["account_id"] = account_id
        if event_prefix:
            query["event"] = {"$regex": "^" + "".join(c if c.isalnum() else "\\" + c for c in event_prefix)}
        cursor = self.audit_log.find(query).sort([("at", pymongo.DESCENDING)]).limit(max(1, min(limit, 1000)))
        return list(cursor)

    # --- reference data -------------------------------------------------------------------------------

    def load_establishments(self, establishments: Iterable[dict[str, Any]], actor: str = "") -> int:
        """Insert or update establishments ({uai, name, type, commune, departement, synthetic})."""
        establishments_list = list(establishments)
        operations = [
            pymongo.ReplaceOne({"_id": e["uai"]}, {k: v for k, v in e.items() if k != "uai"}, upsert=True)
            for e in establishments_list
        ]
        for start in range(0, len(operations), 500):
            self.establishments.bulk_write(operations[start : start + 500], ordered=False)
        for e in establishments_list:
            self._establishment_cache[e["uai"]] = {
                "_id": e["uai"],
                **{k: v for k, v in e.items() if k != "uai"},
            }
        if operations:
            self.audit("reference.establishments_loaded", actor=actor, outcome="ok", count=len(operations))
        return len(operations)

    def establishment(self, uai: str) -> dict[str, Any] | None:
        """An establishment by UAI code (cached: reference data rarely changes)."""
        found = self._establishment_cache.get(uai)
        if found is None:
            found = self.establishments.find_one({"_id": uai})
            if found is not None:
                self._establishment_cache[uai] = found
        return found

    def cached_establishment(self, uai: str) -> dict[str, Any]:
        """An establishment from memory only (for the address book's hot path); {} when unknown."""
        return self._establishment_cache.get(uai) or {}

    def establishment_count(self) -> int:
        """How many establishments are loaded."""
        return self.establishments.count_documents({})

    # --- accounts -------------------------------------------------------------------------------------

    def normalize_identifier(self, identifier: str) -> str:
        """A full lower-case address from an address or a bare local part."""
        ident = (identifier or "").strip().lower()
        if ident and "@" not in ident:
            ident = f"{ident}@{self.domain}"
        return ident

    def loggable_identifier(self, identifier: str) -> str:
        """`identifier` as typed, for the audit log, when it is shaped like an address of ours; otherwise
        "[non conforme]", since people type passwords or their NUMEN in the identifier field."""
        ident = self.normalize_identifier(identifier)
        local, _, domain = ident.partition("@")
        if domain == self.domain and _ADDRESS_LOCAL.match(local) and not looks_like_numen(local):
            return ident
        return "[non conforme]"

    def find(self, identifier: str) -> dict[str, Any] | None:
        """The account of an address, alias, local part or account id (None if none)."""
        ident = (identifier or "").strip()
        if not ident:
            return None
        if "@" not in ident and "." not in ident and len(ident) == 32:
            doc = self.accounts.find_one({"_id": ident.lower()})
            if doc is not None:
                return doc
        entry = self.addresses.find_one({"_id": self.normalize_identifier(ident)})
        if entry is None or not entry.get("account_id"):
            return None
        return self.accounts.find_one({"_id": entry["account_id"]})

    def get(self, identifier: str) -> dict[str, Any]:
        """Like `find`, raising NotFound (French message) when there is no such account."""
        doc = self.find(identifier)
        if doc is None:
            raise NotFound(messages.ACCOUNT_NOT_FOUND.format(identifier=identifier[:100]))
        return doc

    def _allocate_address(self, base: str, account_id: str, snapshot: dict[str, Any]) -> str:
        hint_id = f"homonyms:{base}"
        hint = self.state.find_one({"_id": hint_id})
        rank = int(hint["next"]) if hint else 1
        while True:
            address = f"{local_part(base, rank)}@{self.domain}"
            try:
                self.addresses.insert_one(
                    {
                        "_id": address,
                        "account_id": account_id,
                        "kind": "primary",
                        "mailbox": address,
                        **snapshot,
                    }
                )
            except DuplicateKeyError:
                rank += 1
                continue
            # A hint only (not atomic on FerretDB): the unique _id is what guarantees uniqueness.
            self.state.update_one({"_id": hint_id}, {"$max": {"next": rank + 1}}, upsert=True)
            return address

    def _matching_person(self, request: AccountRequest) -> dict[str, Any] | None:
        key = person_key(request.last_name, request.first_name, request.birth_date.isoformat())
        entry = self.person_keys.find_one({"_id": key})
        for account_id in entry.get("account_ids", []) if entry else []:
            doc = self.accounts.find_one({"_id": account_id})
            if doc is not None and self.hasher.verify(doc.get("numen_hash"), request.numen):
                return doc
        return None

    def create_account(
        self, request: AccountRequest, actor: str = "", *, synthetic: bool = False, source: str = ""
    ) -> ImportResult:
        """Create the account of `request`'s person, or update the one they already have (idempotent)."""
        establishment = self.establishment(request.establishment_uai)
        if establishment is None:
            raise InvalidInput(messages.UNKNOWN_ESTABLISHMENT.format(uai=request.establishment_uai))
        if request.function not in FUNCTIONS:
            raise InvalidInput(messages.UNKNOWN_FUNCTION.format(function=request.function))
        existing = self._matching_person(request)
        wanted = {
            "establishment_uai": request.establishment_uai,
            "departement": establishment["departement"],
            "function": request.function,
            "recovery_address": request.recovery_address,
        }
        if existing is not None:
            changes = {k: v for k, v in wanted.items() if existing.get(k) != v}
            if not changes:
                return ImportResult(request.line, "UNCHANGED", address=existing["address"], account=existing)
            changes["updated_at"] = self._now()
            self.accounts.update_one({"_id": existing["_id"]}, {"$set": changes})
            existing.update(changes)
            self._index(existing)
            self.audit(
                "account.updated",
                actor=actor,
                account=existing,
                outcome="ok",
                fields=sorted(k for k in changes if k != "updated_at"),
                source=source,
            )
            return ImportResult(request.line, "UPDATED", address=existing["address"], account=existing)
        base = base_local_part(request.first_name, request.last_name)
        account_id = uuid.uuid4().hex
        snapshot = {
            "status": ACTIVE,
            "quota_bytes": self.default_quota,
            "display_name": display_name(request.first_name, request.last_name),
        }
        address = self._allocate_address(base, account_id, snapshot)
        now = self._now()
        doc = {
            "_id": account_id,
            "address": address,
            "aliases": [],
            "base_local": base,
            "first_name": request.first_name,
            "last_name": request.last_name,
            "display_name": display_name(request.first_name, request.last_name),
            "sort_key": f"{fold(request.last_name)} {fold(request.first_name)}",
            "tokens": tokens(request.last_name, request.first_name),
            "birth_date": request.birth_date.isoformat(),
            "person_key": person_key(request.last_name, request.first_name, request.birth_date.isoformat()),
            "numen_hash": self.hasher.hash(request.numen),
            "password_hash": None,
            "must_change_password": True,
            "status": ACTIVE,
            "session_epoch": 1,
            "quota_bytes": self.default_quota,
            "synthetic": synthetic,
            "created_at": now,
            "updated_at": now,
            "password_changed_at": None,
            "deleted_at": None,
            "purge_after": None,
            **wanted,
        }
        try:
            self.accounts.insert_one(doc)
        except pymongo.errors.PyMongoError:
            self.addresses.delete_one({"_id": address, "account_id": account_id})
            raise
        self.person_keys.update_one(
            {"_id": doc["person_key"]}, {"$addToSet": {"account_ids": account_id}}, upsert=True
        )
        self._index(doc)
        self.audit(
            "account.created", actor=actor, account=doc, outcome="ok", source=source, synthetic=synthetic
        )
        return ImportResult(request.line, "CREATED", address=address, account=doc)

    def import_accounts(
        self, requests: Iterable[AccountRequest], actor: str = "", source: str = ""
    ) -> list[ImportResult]:
        """Create or update every request; a failing one is reported REJECTED and the others go on."""
        results = []
        for request in requests:
            try:
                results.append(self.create_account(request, actor, source=source))
            except (InvalidInput, Conflict, ValueError) as exc:
                results.append(ImportResult(request.line, "REJECTED", reason=str(exc)))
        created = sum(r.outcome == "CREATED" for r in results)
        self.audit(
            "account.import_batch",
            actor=actor,
            outcome="ok",
            source=source,
            lines=len(results),
            created=created,
            rejected=sum(r.outcome == "REJECTED" for r in results),
        )
        return results

    def add_alias(self, identifier: str, alias: str, actor: str = "") -> dict[str, Any]:
        """Give an account an extra address in the mail domain."""
        doc = self.get(identifier)
        address = self.normalize_identifier(alias)
        local, _, domain = address.partition("@")
        if domain != self.domain:
            raise InvalidInput(messages.ALIAS_DOMAIN.format(domain=self.domain))
        if not local or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789.-_" for c in local):
            raise InvalidInput("Alias invalide : lettres minuscules, chiffres, points et traits d'union.")
        try:
            self.addresses.insert_one(
                {
                    "_id": address,
                    "account_id": doc["_id"],
                    "kind": "alias",
                    "mailbox": doc["address"],
                    "status": doc["status"],
                    "quota_bytes": int(doc.get("quota_bytes", self.default_quota)),
                    "display_name": doc["display_name"],
                }
            )
        except DuplicateKeyError:
            raise Conflict(messages.ALIAS_TAKEN.format(alias=address)) from None
        self.accounts.update_one({"_id": doc["_id"]}, {"$push": {"aliases": address}})
        doc["aliases"] = [*doc.get("aliases", []), address]
        self.audit("account.alias_added", actor=actor, account=doc, outcome="ok", alias=address)
        return doc

    # --- maintenance ----------------------------------------------------------------------------------

    def maintenance(self, fresh: bool = False) -> dict[str, Any]:
        """{"enabled", "message", "since"}; cached one second (it is read on every authentication)."""
        cached = self._maintenance_cache
        if not fresh and cached is not None and time.monotonic() - cached[0] < 1.0:
            return cached[1]
        doc = self.state.find_one({"_id": "maintenance"}) or {}
        value = {
            "enabled": bool(doc.get("enabled")),
            "message": doc.get("message") or messages.MAINTENANCE_DEFAULT,
            "since": doc.get("since"),
        }
        self._maintenance_cache = (time.monotonic(), value)
        return value

    def set_maintenance(self, enabled: bool, message: str = "", actor: str = "") -> dict[str, Any]:
        """Turn maintenance mode on (every login refused with `message`) or off."""
        self.state.replace_one(
            {"_id": "maintenance"},
            {
                "enabled": enabled,
                "message": message.strip() or messages.MAINTENANCE_DEFAULT,
                "since": self._now(),
                "by": actor,
            },
            upsert=True,
        )
        self.audit("maintenance.on" if enabled else "maintenance.off", actor=actor, outcome="ok")
        return self.maintenance(fresh=True)

    # --- authentication -------------------------------------------------------------------------------

    def authenticate(
        self, identifier: str, password: str, client_address: str = "", service: str = ""
    ) -> AuthOutcome:
        """Check credentials (a password, or the NUMEN before the first change) and say why not."""
        outcome = self._authenticate(identifier, password, client_address, service)
        AUTHENTICATIONS.labels(outcome.result).inc()
        return outcome

    def _authenticate(self, identifier: str, password: str, client: str, service: str) -> AuthOutcome:
        maintenance = self.maintenance()
        if maintenance["enabled"]:
            self.audit(
                "auth.refused",
                address=self.loggable_identifier(identifier),
                client_address=client,
                outcome=MAINTENANCE,
                service=service,
            )
            return AuthOutcome(MAINTENANCE, maintenance["message"])
        address = self.normalize_identifier(identifier)[:320]
        client = client or "unknown"
        wait = self.throttle.retry_after(address, client)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            self.audit(
                "auth.throttled",
                address=self.loggable_identifier(address),
                client_address=client,
                outcome=THROTTLED,
                service=service,
            )
            return AuthOutcome(THROTTLED, messages.THROTTLED.format(seconds=seconds), retry_after=seconds)
        doc = self.find(address) if address else None
        numen: str | None = None
        if doc is None or not password:
            self.hasher.burn(password or "-")
            verified = False
        elif doc.get("must_change_password") or not doc.get("password_hash"):
            verified = False
            if looks_like_numen(password):
                numen = normalize_numen(password)
                verified = self.hasher.verify(doc.get("numen_hash"), numen)
            else:
                self.hasher.burn(password)
        else:
            verified = self.hasher.verify(doc["password_hash"], password)
        if not verified:
            tarpit = self.throttle.record_failure(address, client)
            self.audit(
                "auth.failure",
                account=doc,
                address=self.loggable_identifier(address),
                client_address=client,
                outcome=BAD_CREDENTIALS,
                service=service,
            )
            return AuthOutcome(BAD_CREDENTIALS, messages.BAD_CREDENTIALS, tarpit=tarpit)
        assert doc is not None
        self.throttle.record_success(address, client)
        status = doc.get("status")
        if status == DELETED:
            result, message, account = ACCOUNT_DELETED, messages.ACCOUNT_DELETED, None
        elif status == SUSPENDED:
            result, message, account = ACCOUNT_SUSPENDED, messages.ACCOUNT_SUSPENDED, None
        elif numen is not None:
            result, message, account = PASSWORD_CHANGE_REQUIRED, messages.PASSWORD_CHANGE_REQUIRED, doc
        else:
            result, message, account = OK, messages.WELCOME, doc
            if self.hasher.needs_rehash(doc["password_hash"]):
                self.accounts.update_one(
                    {"_id": doc["_id"]}, {"$set": {"password_hash": self.hasher.hash(password)}}
                )
        self.audit(
            "auth.success" if result in (OK, PASSWORD_CHANGE_REQUIRED) else "auth.refused",
            account=doc,
            client_address=client,
            outcome=result,
            service=service,
        )
        return AuthOutcome(result, message, account, numen=numen)

    def check_policy(
        self,
        password: str,
        doc: dict[str, Any] | None = None,
        numen: str | None = None,
        first_name: str = "",
        last_name: str = "",
        identifier: str = "",
    ) -> list[str]:
        """French problems of `password` for this person (empty when acceptable)."""
        if doc is not None:
            first_name, last_name, identifier = doc["first_name"], doc["last_name"], doc["address"]
        verdict = check_password(
            password, first_name=first_name, last_name=last_name, identifier=identifier, numen=numen
        )
        problems = list(verdict.problems)
        if numen is None and doc is not None:
            if any(self.hasher.verify(doc.get("numen_hash"), c) for c in numen_candidates(password)):
                problems.append("Le mot de passe ne doit pas contenir votre NUMEN.")
        return problems

    def change_password(
        self, identifier: str, current: str, new: str, client_address: str = ""
    ) -> dict[str, Any]:
        """Replace the password (or, on first login, the NUMEN) after checking the current one.

        Returns {"ok", "auth": AuthOutcome, "problems": [...], "message", "account"}.
        """
        auth = self.authenticate(identifier, current, client_address, "change-password")
        if auth.result not in (OK, PASSWORD_CHANGE_REQUIRED) or auth.account is None:
            return {"ok": False, "auth": auth, "problems": [], "message": auth.message, "account": None}
        doc = auth.account
        if new == current:
            return {
                "ok": False,
                "auth": auth,
                "problems": [messages.SAME_PASSWORD],
                "message": messages.SAME_PASSWORD,
                "account": None,
            }
        problems = self.check_policy(new, doc, numen=auth.numen)
        if problems:
            self.audit(
                "password.change_refused", account=doc, client_address=client_address, outcome="policy"
            )
            return {
                "ok": False,
                "auth": auth,
                "problems": problems,
                "message": " ".join(problems),
                "account": None,
            }
        doc = self._set_password(doc, new, reason="change", client_address=client_address)
        return {
            "ok": True,
            "auth": auth,
            "problems": [],
            "message": messages.PASSWORD_CHANGED,
            "account": doc,
        }

    def _set_password(
        self, doc: dict[str, Any], new: str, *, reason: str, client_address: str
    ) -> dict[str, Any]:
        now = self._now()
        changes = {
            "password_hash": self.hasher.hash(new),
            "must_change_password": False,
            "password_changed_at": now,
            "updated_at": now,
        }
        self.accounts.update_one({"_id": doc["_id"]}, {"$set": changes, "$inc": {"session_epoch": 1}})
        doc = {**doc, **changes, "session_epoch": int(doc.get("session_epoch", 0)) + 1}
        self.audit(f"password.{reason}", account=doc, client_address=client_address, outcome="ok")
        self._notify(
            PASSWORD_CHANGED,
            {
                "account_id": doc["_id"],
                "address": doc["address"],
                "changed_at": now.isoformat(),
                "reason": reason,
            },
            doc,
        )
        return doc

    def _notify(self, event_type: str, payload: dict[str, Any], doc: dict[str, Any]) -> bool:
        try:
            self.notifier.publish(event_type, payload)
        except NotificationError as exc:
            log.error(
                "event not published",
                extra={"event_type": event_type, "account_id": doc["_id"], "error": str(exc)},
            )
            self.audit("notify.failed", account=doc, outcome="error", event_type=event_type)
            return False
        return True

    def session_state(self, account_id: str) -> dict[str, Any]:
        """{"exists", "status", "session_epoch", "must_change_password", "maintenance"} — read per request
        by the webmail to drop sessions older than the epoch."""
        doc = (
            self.accounts.find_one(
                {"_id": account_id}, {"status": 1, "session_epoch": 1, "must_change_password": 1}
            )
            if account_id
            else None
        )
        return {
            "exists": doc is not None,
            "status": doc.get("status", "") if doc else "",
            "session_epoch": int(doc.get("session_epoch", 0)) if doc else 0,
            "must_change_password": bool(doc.get("must_change_password")) if doc else False,
            "maintenance": self.maintenance()["enabled"],
        }

    # --- recovery -------------------------------------------------------------------------------------

    def request_reset(
        self,
        *,
        identifier: str = "",
        last_name: str = "",
        first_name: str = "",
        numen: str,
        birth_date: str,
        client_address: str = "",
    ) -> tuple[str, int]:
        """Send a reset link to the recovery address if the identity matches an account.

        Returns (French message, retry_after seconds). The message is the same whether or not anything
        matched; InvalidInput is raised only for malformed input (a malformed NUMEN or an impossible date
        say nothing about any account).
        """
        minutes = self.reset_token_ttl // 60
        same_answer = messages.RESET_REQUESTED.format(minutes=minutes)
        if not identifier.strip() and not (last_name.strip() and first_name.strip()):
            raise InvalidInput(messages.RESET_NEED_IDENTITY)
        clean_numen = normalize_numen(numen)
        birth = parse_birth_date(birth_date).isoformat()
        client = client_address or "unknown"
        key = "reset:" + (
            self.normalize_identifier(identifier)
            if identifier.strip()
            else f"{fold(last_name)}|{fold(first_name)}"
        )
        wait = self.throttle.retry_after(key, client)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            self.audit("recovery.throttled", client_address=client, outcome=THROTTLED)
            RESETS.labels("throttled").inc()
            return messages.THROTTLED.format(seconds=seconds), seconds
        candidates: list[dict[str, Any]] = []
        if identifier.strip():
            doc = self.find(identifier)
            if doc is not None:
                candidates.append(doc)
        else:
            entry = self.person_keys.find_one({"_id": person_key(last_name, first_name, birth)})
            for account_id in entry.get("account_ids", []) if entry else []:
                doc = self.accounts.find_one({"_id": account_id})
                if doc is not None:
                    candidates.append(doc)
        candidates = [d for d in candidates if d.get("birth_date") == birth]
        match = None
        for doc in candidates:
            if self.hasher.verify(doc.get("numen_hash"), clean_numen):
                match = doc
                break
        if not candidates:
            self.hasher.burn(clean_numen)
        if match is None or match.get("status") != ACTIVE or not match.get("recovery_address"):
            self.throttle.record_failure(key, client)
            outcome = "no_match" if match is None else f"refused_{match.get('status')}"
            self.audit("recovery.requested", account=match, client_address=client, outcome=outcome)
            RESETS.labels(outcome if match is None else "refused").inc()
            return same_answer, 0
        self.throttle.record_success(key, client)
        token = secrets.token_urlsafe(32)
        now = self._now()
        expires = now + dt.timedelta(seconds=self.reset_token_ttl)
        self.tokens.delete_many({"account_id": match["_id"]})  # only the latest link works
        self.tokens.insert_one(
            {"_id": _token_hash(token), "account_id": match["_id"], "created_at": now, "expires_at": expires}
        )
        self._notify(
            RESET_REQUESTED,
            {
                "account_id": match["_id"],
                "recovery_address": match["recovery_address"],
                "display_name": match["display_name"],
                "reset_url": f"{self.public_url}/reinitialisation?jeton={token}",
                "expires_at": expires.isoformat(),
            },
            match,
        )
        self.audit("recovery.requested", account=match, client_address=client, outcome="link_sent")
        RESETS.labels("link_sent").inc()
        return same_answer, 0

    def complete_reset(self, token: str, new_password: str, client_address: str = "") -> dict[str, Any]:
        """Set a new password with a reset token: {"ok", "message", "problems"}. Single use; the token is
        kept while the new password is refused by the policy, so the user can try another."""
        invalid = {"ok": False, "message": messages.RESET_INVALID_LINK, "problems": []}
        if not token or len(token) > 200:
            return invalid
        token_id = _token_hash(token)
        record = self.tokens.find_one({"_id": token_id})
        now = self._now()
        if record is None or record["expires_at"] <= now:
            self.audit(
                "recovery.invalid_token",
                client_address=client_address,
                outcome="expired" if record else "unknown",
            )
            return invalid
        doc = self.accounts.find_one({"_id": record["account_id"]})
        if doc is None or doc.get("status") != ACTIVE:
            self.tokens.delete_one({"_id": token_id})
            return invalid
        problems = self.check_policy(new_password, doc)
        if problems:
            return {"ok": False, "message": " ".join(problems), "problems": problems}
        if self.tokens.delete_one({"_id": token_id}).deleted_count != 1:
            return invalid  # used concurrently
        self.tokens.delete_many({"account_id": doc["_id"]})
        self._set_password(doc, new_password, reason="reset", client_address=client_address)
        return {"ok": True, "message": messages.RESET_DONE, "problems": []}

    # --- administration -------------------------------------------------------------------------------

    def _update(self, doc: dict[str, Any], changes: dict[str, Any], bump_epoch: bool) -> dict[str, Any]:
        changes = {**changes, "updated_at": self._now()}
        update: dict[str, Any] = {"$set": changes}
        if bump_epoch:
            update["$inc"] = {"session_epoch": 1}
        self.accounts.update_one({"_id": doc["_id"]}, update)
        if "status" in changes:
            # The addresses carry a copy of the status so that resolving a recipient is one lookup.
            self.addresses.update_many({"account_id": doc["_id"]}, {"$set": {"status": changes["status"]}})
        doc = {**doc, **changes}
        if bump_epoch:
            doc["session_epoch"] = int(doc.get("session_epoch", 0)) + 1
        self._index(doc)
        return doc

    def suspend(self, identifier: str, reason: str = "", actor: str = "") -> tuple[dict[str, Any], str]:
        """Suspend an account: logins refused as suspended, sessions revoked, hidden from the address book."""
        doc = self.get(identifier)
        if doc["status"] == DELETED:
            raise Conflict(messages.ALREADY_DELETED.format(address=doc["address"]))
        doc = self._update(doc, {"status": SUSPENDED, "suspended_reason": reason[:500]}, bump_epoch=True)
        self.audit("account.suspended", actor=actor, account=doc, outcome="ok", reason=reason[:500])
        return doc, messages.SUSPENDED_OK.format(address=doc["address"])

    def unsuspend(self, identifier: str, actor: str = "") -> tuple[dict[str, Any], str]:
        """Lift a suspension."""
        doc = self.get(identifier)
        if doc["status"] != SUSPENDED:
            raise Conflict(messages.NOT_SUSPENDED.format(address=doc["address"]))
        doc = self._update(doc, {"status": ACTIVE, "suspended_reason": ""}, bump_epoch=False)
        self.audit("account.unsuspended", actor=actor, account=doc, outcome="ok")
        return doc, messages.UNSUSPENDED_OK.format(address=doc["address"])

    def delete(self, identifier: str, reason: str = "", actor: str = "") -> tuple[dict[str, Any], str]:
        """Soft-delete: refused at login and at RCPT as deleted; restorable until the retention ends."""
        doc = self.get(identifier)
        if doc["status"] == DELETED:
            raise Conflict(messages.ALREADY_DELETED.format(address=doc["address"]))
        now = self._now()
        purge_after = now + dt.timedelta(days=self.retention_days)
        doc = self._update(
            doc,
            {
                "status": DELETED,
                "deleted_at": now,
                "purge_after": purge_after,
                "status_before_delete": doc["status"],
            },
            bump_epoch=True,
        )
        self.tokens.delete_many({"account_id": doc["_id"]})
        self.audit("account.deleted", actor=actor, account=doc, outcome="ok", reason=reason[:500])
        return doc, messages.DELETED_OK.format(address=doc["address"], until=purge_after.strftime("%d/%m/%Y"))

    def restore(self, identifier: str, actor: str = "") -> tuple[dict[str, Any], str]:
        """Undo a deletion (before the purge) or a suspension."""
        doc = self.get(identifier)
        if doc["status"] == SUSPENDED:
            return self.unsuspend(identifier, actor)
        if doc["status"] != DELETED:
            raise Conflict(messages.NOT_DELETED.format(address=doc["address"]))
        doc = self._update(doc, {"status": ACTIVE, "deleted_at": None, "purge_after": None}, bump_epoch=False)
        self.audit("account.restored", actor=actor, account=doc, outcome="ok")
        return doc, messages.RESTORED_OK.format(address=doc["address"])

    def reset_first_login(self, identifier: str, actor: str = "") -> tuple[dict[str, Any], str]:
        """Forget the password: the NUMEN is the temporary password again, sessions are revoked."""
        doc = self.get(identifier)
        if doc["status"] == DELETED:
            raise Conflict(messages.ALREADY_DELETED.format(address=doc["address"]))
        doc = self._update(doc, {"password_hash": None, "must_change_password": True}, bump_epoch=True)
        self.tokens.delete_many({"account_id": doc["_id"]})
        self.audit("account.reset_first_login", actor=actor, account=doc, outcome="ok")
        return doc, messages.RESET_FIRST_LOGIN_OK.format(address=doc["address"])

    def purge(self, actor: str = "", include_unexpired: bool = False) -> tuple[int, int]:
        """Erase deleted accounts whose retention has ended (or all deleted ones), and expired reset
        tokens. Addresses stay as retired tombstones. Returns (accounts purged, tokens purged)."""
        from common.db import purge_expired

        now = self._now()
        query: dict[str, Any] = {"status": DELETED}
        if not include_unexpired:
            query["purge_after"] = {"$lte": now}
        purged = 0
        for doc in list(self.accounts.find(query, {"_id": 1, "address": 1, "aliases": 1, "person_key": 1})):
            for address in [doc["address"], *doc.get("aliases", [])]:
                self.addresses.update_one(
                    {"_id": address}, {"$set": {"kind": "retired", "account_id": None, "retired_at": now}}
                )
            self.person_keys.update_one(
                {"_id": doc.get("person_key", "")}, {"$pull": {"account_ids": doc["_id"]}}
            )
            self.tokens.delete_many({"account_id": doc["_id"]})
            self.accounts.delete_one({"_id": doc["_id"]})
            self.address_book.remove(doc["_id"])
            self.audit("account.purged", actor=actor, account=doc, outcome="ok")
            purged += 1
        tokens_purged = purge_expired(self.db, RESET_TOKENS, "expires_at", now)
        self.audit("maintenance.purge", actor=actor, outcome="ok", accounts=purged, tokens=tokens_purged)
        return purged, tokens_purged

    # --- lookups --------------------------------------------------------------------------------------

    def resolve(self, address: str) -> Resolution:
        """Where mail for `address` goes (the mail pipeline's RCPT check)."""
        entry = self.addresses.find_one({"_id": (address or "").strip().lower()})
        if not entry or not entry.get("account_id"):
            doc = None  # unknown, or a retired address of a purged account
        elif "status" in entry and "mailbox" in entry:
            doc = {
                "_id": entry["account_id"],
                "address": entry["mailbox"],
                "status": entry["status"],
                "quota_bytes": entry.get("quota_bytes", self.default_quota),
                "display_name": entry.get("display_name", ""),
            }
        else:  # written before the copy existed
            doc = self.accounts.find_one({"_id": entry["account_id"]})
        if doc is None:
            resolution = Resolution("UNKNOWN")
        elif doc["status"] == DELETED:
            resolution = Resolution("DELETED", doc)
        elif doc["status"] == SUSPENDED:
            resolution = Resolution("SUSPENDED", doc)
        else:
            resolution = Resolution("DELIVERABLE", doc)
        RESOLUTIONS.labels(resolution.state).inc()
        return resolution

    def contact_card(self, identifier: str) -> dict[str, Any] | None:
        """The card of an active account: names, function, establishment and whom to ask for help."""
        doc = self.find(identifier)
        if doc is None or doc["status"] != ACTIVE:
            return None
        est = self.establishment(doc.get("establishment_uai", "")) or {}
        dep = DEPARTEMENTS.get(doc.get("departement", ""))
        return {
            **doc,
            "function_label": FUNCTIONS.get(doc.get("function", ""), ""),
            "establishment_name": est.get("name", ""),
            "establishment_type": est.get("type", ""),
            "commune": est.get("commune", ""),
            "departement_name": dep.name if dep else "",
            "help_contact": dep.help_contact if dep else "",
        }


def _token_hash(token: str) -> str:
    # Reset tokens carry 256 random bits: a plain SHA-256 is enough to make the stored value useless.
    return hashlib.sha256(token.encode()).hexdigest()
