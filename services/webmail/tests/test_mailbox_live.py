"""The live-event hub against the real RabbitMQ: a subscriber gets its mailbox's notifications and no
other's, bindings follow subscriptions, and the consumer survives a broken connection."""

from __future__ import annotations

import asyncio
import json

import pytest
from kombu import Connection, Producer

from common.config import get_settings
from common.topology import LIVE_EXCHANGE
from webmail.realtime import LiveHub

pytestmark = pytest.mark.integration

A = "camille.martin@ac-montpellier.fr"
B = "louis.garcia@ac-montpellier.fr"


def publish(mailbox: str, subject: str) -> None:
    with Connection(get_settings().amqp_url) as connection:
        producer = Producer(connection.channel(), exchange=LIVE_EXCHANGE)
        LIVE_EXCHANGE(producer.channel).declare()
        notification = {"type": "new_mail", "mailbox": mailbox, "folder": "INBOX", "subject": subject}
        producer.publish(json.dumps(notification), routing_key=mailbox, content_type="application/json")


async def next_item(stream: asyncio.Queue, timeout: float = 10.0):
    return await asyncio.wait_for(stream.get(), timeout)


def test_subscribers_get_their_own_notifications_and_survive_a_reconnection():
    async def main():
        hub = LiveHub(get_settings().amqp_url)
        hub.start()
        try:
            mine = hub.subscribe(A)
            assert await next_item(mine) == {"type": "ready"}
            theirs = hub.subscribe(B)
            assert await next_item(theirs) == {"type": "ready"}
            await asyncio.to_thread(publish, A, "pour Camille")
            await asyncio.to_thread(publish, B, "pour Louis")
            assert (await next_item(mine))["subject"] == "pour Camille"
            assert (await next_item(theirs))["subject"] == "pour Louis"
            assert mine.empty() and theirs.empty()
            hub.unsubscribe(B, theirs)
            await asyncio.sleep(1.5)  # the unbind is done by the consumer thread
            await asyncio.to_thread(publish, B, "personne n'écoute")
            # break the consumer's connection: it reconnects and re-binds A
            assert hub.connects == 1
            await asyncio.to_thread(_break_connections)
            for _ in range(120):  # the thread notices, then reconnects and re-binds
                if hub.connects == 2 and hub.connected.is_set():
                    break
                await asyncio.sleep(0.25)
            assert hub.connects == 2
            await asyncio.to_thread(publish, A, "après reconnexion")
            item = await next_item(mine, 30)
            while item.get("type") == "ready":
                item = await next_item(mine, 30)
            assert item["subject"] == "après reconnexion"
        finally:
            await hub.stop()

    asyncio.run(main())


def _break_connections() -> None:
    """Close this run's broker connections from the broker side (management API), as a restart would."""
    import base64
    import urllib.parse
    import urllib.request

    from tests.vhost import MANAGEMENT_PORT

    url = urllib.parse.urlsplit(get_settings().amqp_url)
    vhost_name = urllib.parse.quote(urllib.parse.unquote(url.path[1:]) or "/", safe="")
    auth = base64.b64encode(f"{url.username or 'guest'}:{url.password or 'guest'}".encode()).decode()
    base = f"http://{url.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}/api"

    def call(method: str, path: str):
        request = urllib.request.Request(
            base + path, method=method, headers={"Authorization": f"Basic {auth}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    import time

    deadline = time.monotonic() + 20
    connections = []
    while not connections and time.monotonic() < deadline:  # the management API lags a few seconds
        connections = call("GET", f"/vhosts/{vhost_name}/connections") or []
        time.sleep(0.5)
    assert connections, "no connection to break"
    for connection in connections:
        call("DELETE", "/connections/" + urllib.parse.quote(connection["name"], safe=""))
