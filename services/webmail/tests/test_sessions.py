"""SessionStore against the real database: rotation at login, timeouts, revocation, purge."""

from __future__ import annotations

import datetime as dt

from webmail.sessions import SessionStore, token_hash


def make_store(database, idle_minutes=30, max_hours=12):
    return SessionStore(database, dt.timedelta(minutes=idle_minutes), dt.timedelta(hours=max_hours))


def login(store, session, account_id="acc-1", address="camille.martin@ac-montpellier.fr"):
    return store.login(
        session,
        account_id=account_id,
        address=address,
        display_name="Camille Martin",
        session_epoch=1,
        must_change_password=False,
    )


def test_token_is_stored_hashed_and_rotated_at_login(database):
    store = make_store(database)
    anonymous = store.new("127.0.0.1", "Chromium")
    stored = database.webmail_sessions.find_one({"_id": anonymous.id})
    assert stored is not None and anonymous.token not in str(stored)
    assert anonymous.id == token_hash(anonymous.token)
    logged_in = login(store, anonymous)
    assert logged_in.token != anonymous.token and logged_in.csrf_token != anonymous.csrf_token
    assert store.load(anonymous.token) is None
    assert store.load(logged_in.token).account_id == "acc-1"


def test_idle_and_absolute_timeouts_end_a_session(database):
    store = make_store(database)
    session = login(store, store.new())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)
    database.webmail_sessions.update_one({"_id": session.id}, {"$set": {"last_seen": past}})
    assert store.load(session.token) is None
    assert database.webmail_sessions.find_one({"_id": session.id}) is None

    other = login(store, store.new())
    database.webmail_sessions.update_one(
        {"_id": other.id}, {"$set": {"expires_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)}}
    )
    assert store.load(other.token) is None


def test_owner_revokes_only_own_sessions(database):
    store = make_store(database)
    mine = login(store, store.new())
    theirs = login(store, store.new(), account_id="acc-2", address="louis.garcia@ac-montpellier.fr")
    assert not store.end_by_short_id("acc-1", theirs.short_id)
    assert store.load(theirs.token) is not None
    assert store.end_by_short_id("acc-1", mine.short_id)
    assert store.load(mine.token) is None


def test_purge_deletes_ended_and_idle_sessions_only(database):
    store = make_store(database)
    live = login(store, store.new())
    ended = login(store, store.new())
    idle = login(store, store.new())
    now = dt.datetime.now(dt.UTC)
    database.webmail_sessions.update_one({"_id": ended.id}, {"$set": {"expires_at": now}})
    database.webmail_sessions.update_one(
        {"_id": idle.id}, {"$set": {"last_seen": now - dt.timedelta(minutes=45)}}
    )
    assert store.purge() == 2
    assert [doc["_id"] for doc in database.webmail_sessions.find()] == [live.id]
