"""Test doubles for the webmail's unit tests (not used in production): `FakeDirectory`, an in-memory
stand-in for `AsyncDirectoryClient` that answers like the directory (same French messages), and
`WebClient`, a cookie-keeping wrapper of aiohttp's test client that sends `Origin` and the CSRF token
the way a browser and the pages do, and `store_message`, which files a message in a mailbox with the
fields delivery writes.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from directory import messages
from directory.client import (
    Account,
    AuthResult,
    DirectoryInvalidInput,
    DirectoryUnavailable,
    Maintenance,
    PasswordChange,
    SessionState,
)
from directory.reference import DEPARTEMENTS

RESET_MINUTES = 30


def store_message(db, mailbox: str, raw: bytes, message_id: str, folder: str = "INBOX", **extra: Any) -> str:
    """Store `raw` under `message_id` and file it, unread and received now, in `mailbox`'s `folder` with
    the fields delivery writes (`common.mailstore.summarize`); returns the entry id."""
    from common import mailstore
    from common.db import BlobStore, utcnow

    BlobStore(db).put(message_id, raw)
    entry = {
        **mailstore.summarize(raw).to_document(),
        "_id": mailstore.entry_id(message_id, mailbox, "rcpt"),
        "message_id": message_id,
        "mailbox": mailbox,
        "folder": folder,
        "size": len(raw),
        "received_at": utcnow(),
        "envelope_from": "x@example.org",
        "flags": {"seen": False, "flagged": False, "answered": False},
        **extra,
    }
    mailstore.insert_entries(db, [entry])
    return entry["_id"]


@dataclass
class FakeAccount:
    account: Account
    password: str
    numen: str
    birth_date: str
    status: str = "active"
    must_change: bool = False


@dataclass
class FakeDirectory:
    """In-memory directory with the RPCs the webmail calls. Set `unavailable` to simulate an outage."""

    accounts: dict[str, FakeAccount] = field(default_factory=dict)
    maintenance_on: bool = False
    maintenance_message: str = ""
    unavailable: bool = False
    throttled: set[str] = field(default_factory=set)
    reset_tokens: dict[str, str] = field(default_factory=dict)  # token -> address
    reset_requests: list[dict[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def add(
        self,
        first_name: str,
        last_name: str,
        password: str = "",
        *,
        numen: str = "",
        departement: str = "34",
        birth_date: str = "1984-05-17",
    ) -> str:
        address = f"{first_name.lower()}.{last_name.lower()}@ac-montpellier.fr"
        account = Account(
            account_id=secrets.token_hex(8),
            address=address,
            aliases=(),
            first_name=first_name,
            last_name=last_name,
            display_name=f"{first_name} {last_name}",
            status="active",
            must_change_password=not password,
            establishment_uai="0340001S",
            establishment_name="Collège Jean Moulin",
            departement=departement,
            function="enseignant",
            quota_bytes=1 << 30,
            session_epoch=1,
            synthetic=False,
        )
        self.accounts[address] = FakeAccount(
            account, password, numen or "01E9501234ABC", birth_date, must_change=not password
        )
        return address

    def _find(self, identifier: str) -> FakeAccount | None:
        identifier = identifier.strip().lower()
        if "@" not in identifier:
            identifier += "@ac-montpellier.fr"
        return self.accounts.get(identifier)

    def _by_id(self, account_id: str) -> FakeAccount | None:
        return next((a for a in self.accounts.values() if a.account.account_id == account_id), None)

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.unavailable:
            raise DirectoryUnavailable("failed to connect")

    def set_status(self, address: str, status: str) -> None:
        record = self.accounts[address]
        record.status = status
        self._bump(record)

    def _bump(self, record: FakeAccount) -> None:
        record.account = dataclasses.replace(record.account, session_epoch=record.account.session_epoch + 1)

    async def authenticate(
        self, identifier: str, password: str, client_address: str = "", service: str = ""
    ) -> AuthResult:
        self._check("authenticate")
        if self.maintenance_on:
            return AuthResult("MAINTENANCE", self.maintenance_message or messages.MAINTENANCE_DEFAULT, None)
        record = self._find(identifier)
        if record is not None and record.account.address in self.throttled:
            return AuthResult("THROTTLED", messages.THROTTLED.format(seconds=60), None, 60)
        if record is None:
            return AuthResult("BAD_CREDENTIALS", messages.BAD_CREDENTIALS, None)
        numen_login = record.must_change and password.replace(" ", "").upper() == record.numen
        if not numen_login and (record.must_change or password != record.password):
            return AuthResult("BAD_CREDENTIALS", messages.BAD_CREDENTIALS, None)
        if record.status == "deleted":
            return AuthResult("ACCOUNT_DELETED", messages.ACCOUNT_DELETED, None)
        if record.status == "suspended":
            return AuthResult("ACCOUNT_SUSPENDED", messages.ACCOUNT_SUSPENDED, None)
        if numen_login:
            return AuthResult("PASSWORD_CHANGE_REQUIRED", messages.PASSWORD_CHANGE_REQUIRED, record.account)
        return AuthResult("OK", messages.WELCOME, record.account)

    @staticmethod
    def _problems(password: str) -> tuple[str, ...]:
        problems = []
        if len(password) < 12:
            problems.append("Le mot de passe doit compter au moins 12 caractères.")
        if password.lower().startswith("azerty"):
            problems.append("Ce mot de passe est trop courant : choisissez-en un autre.")
        return tuple(problems)

    async def change_password(
        self, identifier: str, current_password: str, new_password: str, client_address: str = ""
    ) -> PasswordChange:
        auth = await self.authenticate(identifier, current_password, client_address)
        if auth.result not in ("OK", "PASSWORD_CHANGE_REQUIRED"):
            return PasswordChange(False, auth.result, auth.message, (), None, auth.retry_after_seconds)
        problems = self._problems(new_password)
        if problems:
            return PasswordChange(False, auth.result, " ".join(problems), problems, None)
        record = self._find(identifier)
        record.password, record.must_change = new_password, False
        record.account = dataclasses.replace(record.account, must_change_password=False)
        self._bump(record)
        return PasswordChange(True, auth.result, messages.PASSWORD_CHANGED, (), record.account)

    async def check_password_policy(
        self, password: str, first_name: str = "", last_name: str = "", identifier: str = ""
    ) -> tuple[bool, tuple[str, ...], str]:
        self._check("check_password_policy")
        problems = self._problems(password)
        return not problems, problems, "Au moins 12 caractères."

    async def session_state(self, account_id: str) -> SessionState:
        self._check("session_state")
        record = self._by_id(account_id)
        if record is None:
            return SessionState(False, "", 0, False, self.maintenance_on)
        return SessionState(
            True, record.status, record.account.session_epoch, record.must_change, self.maintenance_on
        )

    async def maintenance(self) -> Maintenance:
        self._check("maintenance")
        return Maintenance(self.maintenance_on, self.maintenance_message, "")

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
        self._check("request_password_reset")
        if not re.fullmatch(r"\d{2}[A-Z]\d{7}[A-Z]{3}", numen.replace(" ", "").upper()):
            raise DirectoryInvalidInput("NUMEN invalide : 13 caractères, par exemple 01E9501234ABC.")
        if not identifier and not (last_name and first_name):
            raise DirectoryInvalidInput(messages.RESET_NEED_IDENTITY)
        record = self._find(identifier or f"{first_name}.{last_name}")
        if record is not None and record.numen == numen and record.birth_date == birth_date:
            token = secrets.token_urlsafe(32)
            self.reset_tokens[token] = record.account.address
            self.reset_requests.append({"address": record.account.address, "token": token})
        return messages.RESET_REQUESTED.format(minutes=RESET_MINUTES), 0

    async def complete_password_reset(
        self, token: str, new_password: str, client_address: str = ""
    ) -> tuple[bool, str, tuple[str, ...]]:
        self._check("complete_password_reset")
        if token not in self.reset_tokens:
            return False, messages.RESET_INVALID_LINK, ()
        problems = self._problems(new_password)
        if problems:
            return False, " ".join(problems), problems
        record = self.accounts[self.reset_tokens.pop(token)]
        record.password, record.must_change = new_password, False
        self._bump(record)
        return True, messages.RESET_DONE, ()

    async def contact_card(self, identifier: str) -> Any:
        self._check("contact_card")
        return None

    async def reference(self) -> Any:
        self._check("reference")

        @dataclass
        class Reference:
            departements: list[Any]

        @dataclass
        class Dep:
            code: str
            name: str
            dsden_name: str
            dsden_city: str
            dsden_phone: str
            dsden_email: str
            dsden_postal_address: str
            contact_synthetic: bool

        return Reference(
            [
                Dep(
                    d.code,
                    d.name,
                    d.dsden_name,
                    d.dsden_city,
                    d.dsden_phone,
                    d.dsden_email,
                    d.dsden_postal_address,
                    d.contact_synthetic,
                )
                for d in DEPARTEMENTS.values()
            ]
        )

    async def close(self) -> None:
        pass


_CSRF = re.compile(r'name="csrf-token" content="([^"]*)"')


class WebClient:
    """Drives the app like a browser: keeps the session cookie itself (so that `__Host-`/Secure cookies
    work over the test server's plain http), sends `Origin`, and fills the CSRF token of the last page."""

    def __init__(self, client: Any, cookie_name: str):
        self.client = client
        self.cookie_name = cookie_name
        self.token = ""
        self.csrf = ""
        self.set_cookie_headers: list[str] = []

    @property
    def origin(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}
        if self.token:
            headers["Cookie"] = f"{self.cookie_name}={self.token}"
        headers.update(extra or {})
        return headers

    async def _keep(self, response: Any) -> str:
        for header in response.headers.getall("Set-Cookie", []):
            self.set_cookie_headers.append(header)
            morsel = SimpleCookie(header).get(self.cookie_name)
            if morsel is not None:
                self.token = "" if morsel["max-age"] == "0" or not morsel.value else morsel.value
        if not response.content_type.startswith("text/"):
            return ""
        text = await response.text()
        found = _CSRF.search(text)
        if found and found.group(1):
            self.csrf = found.group(1)
        return text

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[Any, str]:
        response = await self.client.get(path, headers=self._headers(headers), allow_redirects=False)
        return response, await self._keep(response)

    async def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        csrf: bool = True,
        origin: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Any, str]:
        extra = {"Origin": self.origin if origin is None else origin, **(headers or {})}
        if json is not None:
            if csrf:
                extra["X-CSRF-Token"] = self.csrf
            response = await self.client.post(
                path, json=json, headers=self._headers(extra), allow_redirects=False
            )
        else:
            form = dict(data or {})
            if csrf:
                form.setdefault("csrf_token", self.csrf)
            response = await self.client.post(
                path, data=form, headers=self._headers(extra), allow_redirects=False
            )
        return response, await self._keep(response)
