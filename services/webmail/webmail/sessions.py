"""Server-side webmail sessions, stored in the database (`webmail_sessions`).

The browser holds only a random token in a `__Host-` cookie; the database keeps its SHA-256 (the
document's `_id`, so a lookup is one `_id` read), never the token itself. A session is anonymous until
login (it carries the CSRF token of the login form and the captcha answer), and a new token is issued at
login and after the first-login password change, the old one deleted, so a token planted before login
is worthless after it. A session ends after `WEBMAIL_SESSION_IDLE_MINUTES` without a request, after
`WEBMAIL_SESSION_MAX_HOURS` in all, when its owner revokes it from the sessions page, or when the
directory's `session_epoch` of the account moves (password changed, account suspended).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from common.db import utcnow

COLLECTION = "webmail_sessions"
INDEXES = {
    COLLECTION: [
        IndexModel([("account_id", ASCENDING)], name="by_account"),
        IndexModel([("expires_at", ASCENDING)], name="by_expiry"),
        IndexModel([("last_seen", ASCENDING)], name="by_last_seen"),
    ]
}
#: How often each webmail process purges ended sessions (anonymous ones pile up otherwise).
PURGE_INTERVAL_SECONDS = 600

#: An anonymous session (login form, captcha) lives this long without becoming a login.
ANONYMOUS_LIFETIME = dt.timedelta(minutes=30)
#: last_seen is written at most this often, so that reading pages does not write on every request.
TOUCH_INTERVAL = dt.timedelta(seconds=60)


def token_hash(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Session:
    """One browser's session; `account_id` is empty until login."""

    token: str
    id: str
    csrf_token: str
    created_at: dt.datetime
    last_seen: dt.datetime
    expires_at: dt.datetime
    account_id: str = ""
    address: str = ""
    display_name: str = ""
    session_epoch: int = 0
    must_change_password: bool = False
    client_address: str = ""
    user_agent: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    #: set when the token must be (re)sent to the browser
    new_cookie: bool = False
    #: set when `data` changed and must be saved
    dirty: bool = False

    @property
    def authenticated(self) -> bool:
        return bool(self.account_id) and not self.must_change_password

    @property
    def short_id(self) -> str:
        """A non-secret handle of the session, shown on the sessions page and used to revoke it."""
        return self.id[:16]

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "csrf_token": self.csrf_token,
            "created_at": self.created_at,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
            "account_id": self.account_id,
            "address": self.address,
            "display_name": self.display_name,
            "session_epoch": self.session_epoch,
            "must_change_password": self.must_change_password,
            "client_address": self.client_address,
            "user_agent": self.user_agent[:300],
            "data": self.data,
        }

    @classmethod
    def from_document(cls, token: str, doc: dict[str, Any]) -> Session:
        return cls(
            token=token,
            id=doc["_id"],
            csrf_token=doc["csrf_token"],
            created_at=_aware(doc["created_at"]),
            last_seen=_aware(doc["last_seen"]),
            expires_at=_aware(doc["expires_at"]),
            account_id=doc.get("account_id", ""),
            address=doc.get("address", ""),
            display_name=doc.get("display_name", ""),
            session_epoch=int(doc.get("session_epoch", 0)),
            must_change_password=bool(doc.get("must_change_password")),
            client_address=doc.get("client_address", ""),
            user_agent=doc.get("user_agent", ""),
            data=dict(doc.get("data") or {}),
        )


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class SessionStore:
    """Create, load, rotate and end sessions. Synchronous pymongo: call it from a thread executor."""

    def __init__(self, db: Database, idle: dt.timedelta, absolute: dt.timedelta):
        self.collection = db[COLLECTION]
        self.idle, self.absolute = idle, absolute

    def new(self, client_address: str = "", user_agent: str = "") -> Session:
        """A new anonymous session (saved)."""
        now = utcnow()
        token = secrets.token_urlsafe(32)
        session = Session(
            token=token,
            id=token_hash(token),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            expires_at=now + ANONYMOUS_LIFETIME,
            client_address=client_address,
            user_agent=user_agent,
            new_cookie=True,
        )
        self.collection.insert_one(session.to_document())
        return session

    def load(self, token: str) -> Session | None:
        """The live session of a cookie token, or None (unknown, expired or idle too long: deleted)."""
        if not token or len(token) > 100:
            return None
        doc = self.collection.find_one({"_id": token_hash(token)})
        if doc is None:
            return None
        session = Session.from_document(token, doc)
        now = utcnow()
        if now >= session.expires_at or now - session.last_seen >= self.idle:
            self.collection.delete_one({"_id": session.id})
            return None
        if now - session.last_seen >= TOUCH_INTERVAL:
            session.last_seen = now
            self.collection.update_one({"_id": session.id}, {"$set": {"last_seen": now}})
        return session

    def login(
        self,
        old: Session,
        *,
        account_id: str,
        address: str,
        display_name: str,
        session_epoch: int,
        must_change_password: bool,
    ) -> Session:
        """Rotate to a new token for a login (or the end of the first-login change); the old one ends."""
        now = utcnow()
        token = secrets.token_urlsafe(32)
        session = Session(
            token=token,
            id=token_hash(token),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            expires_at=now + (ANONYMOUS_LIFETIME if must_change_password else self.absolute),
            account_id=account_id,
            address=address,
            display_name=display_name,
            session_epoch=session_epoch,
            must_change_password=must_change_password,
            client_address=old.client_address,
            user_agent=old.user_agent,
            new_cookie=True,
        )
        self.collection.insert_one(session.to_document())
        self.collection.delete_one({"_id": old.id})
        return session

    def save_data(self, session: Session) -> None:
        """Persist `session.data` (flash messages, captcha answer, compose state)."""
        self.collection.update_one({"_id": session.id}, {"$set": {"data": session.data}})
        session.dirty = False

    def end(self, session_id: str) -> None:
        """End one session by its stored id."""
        self.collection.delete_one({"_id": session_id})

    def of_account(self, account_id: str) -> list[Session]:
        """The live sessions of an account, most recent first (the sessions page)."""
        now = utcnow()
        sessions = [
            Session.from_document("", doc) for doc in self.collection.find({"account_id": account_id})
        ]
        live = [s for s in sessions if s.expires_at > now and now - s.last_seen < self.idle]
        return sorted(live, key=lambda s: s.last_seen, reverse=True)

    def end_by_short_id(self, account_id: str, short_id: str) -> bool:
        """End the session of `account_id` whose short id is `short_id`; False if there is none."""
        for session in self.of_account(account_id):
            if secrets.compare_digest(session.short_id, short_id):
                self.end(session.id)
                return True
        return False

    def purge(self) -> int:
        """Delete sessions past their end or idle too long (FerretDB has no TTL index); returns how many."""
        now = utcnow()
        expired = self.collection.delete_many({"expires_at": {"$lte": now}}).deleted_count
        idle = self.collection.delete_many({"last_seen": {"$lte": now - self.idle}}).deleted_count
        return expired + idle

    def end_all(self, account_id: str, keep: str = "") -> int:
        """End every session of an account except `keep` (an id); returns how many ended."""
        ended = 0
        for session in self.of_account(account_id):
            if session.id != keep:
                self.end(session.id)
                ended += 1
        return ended
