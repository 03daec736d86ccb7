"""The spam service's sender lists remember lookups for a few seconds, and forget a user's on a change."""

from __future__ import annotations

from spam.lists import ListKind, SenderLists


class FakeCollection:
    def __init__(self):
        self.documents: list[dict] = []
        self.finds = 0

    def find(self, query, projection=None):
        self.finds += 1
        senders = query["sender"]["$in"]
        return [d for d in self.documents if d["user"] == query["user"] and d["sender"] in senders]

    def update_one(self, query, update, upsert=False):
        self.documents = [
            d for d in self.documents if (d["user"], d["sender"]) != (query["user"], query["sender"])
        ]
        self.documents.append({**query, **update["$set"]})

    def count_documents(self, query):
        return sum(1 for d in self.documents if d["user"] == query["user"])


class FakeDatabase(dict):
    def __missing__(self, name):
        self[name] = FakeCollection()
        return self[name]


def lists(cache_seconds: float, clock=lambda: 0.0) -> tuple[SenderLists, FakeCollection]:
    db = FakeDatabase()
    sender_lists = SenderLists(db, cache_seconds=cache_seconds, clock=clock)
    return sender_lists, sender_lists.collection


def test_lookups_are_remembered_and_a_change_forgets_them():
    now = [0.0]
    sender_lists, collection = lists(10, clock=lambda: now[0])
    for _ in range(3):
        assert sender_lists.lookup("louis@ac.fr", "promo@exemple.biz") is None
    assert collection.finds == 1
    sender_lists.block("louis@ac.fr", "@exemple.biz")  # through this object: seen at once
    assert sender_lists.lookup("louis@ac.fr", "promo@exemple.biz") is ListKind.BLOCK
    # A change made elsewhere (another process) is seen once the remembered answer expires.
    collection.documents.clear()
    assert sender_lists.lookup("louis@ac.fr", "promo@exemple.biz") is ListKind.BLOCK
    now[0] = 10.5
    assert sender_lists.lookup("louis@ac.fr", "promo@exemple.biz") is None


def test_by_default_nothing_is_remembered():
    sender_lists, collection = lists(0)
    sender_lists.lookup("louis@ac.fr", "promo@exemple.biz")
    sender_lists.lookup("louis@ac.fr", "promo@exemple.biz")
    assert collection.finds == 2
