"""Private RabbitMQ virtual hosts, so that concurrent or interrupted test runs never share queues.

A test run's services consume the queues of its own virtual host: a process left behind by a killed run,
or a second run on the same machine, cannot take (and dead-letter) this run's events. The virtual host
is created and removed through the RabbitMQ management API, which `scripts/stack.py` enables.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

MANAGEMENT_PORT = 15672


def management(amqp_url: str, method: str, path: str, body: dict | None = None, timeout: float = 10) -> int:
    """Call the management API of the broker behind `amqp_url`; returns the HTTP status."""
    url = urllib.parse.urlsplit(amqp_url)
    host = url.hostname or "127.0.0.1"
    auth = base64.b64encode(f"{url.username or 'guest'}:{url.password or 'guest'}".encode()).decode()
    request = urllib.request.Request(
        f"http://{host}:{MANAGEMENT_PORT}/api/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def create_vhost(amqp_url: str, prefix: str) -> str:
    """Create a fresh virtual host, grant the URL's user all rights on it; returns its AMQP URL."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    user = urllib.parse.urlsplit(amqp_url).username or "guest"
    quoted = urllib.parse.quote(name, safe="")
    status = management(amqp_url, "PUT", f"vhosts/{quoted}")
    if status not in (201, 204):
        raise RuntimeError(f"cannot create a vhost (management API): HTTP {status}")
    perms = {"configure": ".*", "write": ".*", "read": ".*"}
    status = management(amqp_url, "PUT", f"permissions/{quoted}/{user}", perms)
    if status not in (201, 204):
        delete_vhost(_with_vhost(amqp_url, quoted))
        raise RuntimeError(f"cannot grant {user} the vhost: HTTP {status}")
    return _with_vhost(amqp_url, quoted)


def _with_vhost(amqp_url: str, quoted_vhost: str) -> str:
    url = urllib.parse.urlsplit(amqp_url)
    return f"{url.scheme}://{url.netloc}/{quoted_vhost}"


def delete_vhost(amqp_url: str) -> None:
    """Delete the virtual host named by `amqp_url` (and every queue in it)."""
    quoted = urllib.parse.urlsplit(amqp_url).path.lstrip("/")
    if quoted:
        management(amqp_url, "DELETE", f"vhosts/{quoted}")


@contextlib.contextmanager
def private_vhost(amqp_url: str, prefix: str = "webmail-test") -> Iterator[str]:
    """A fresh virtual host for the duration of a block; yields its AMQP URL."""
    url = create_vhost(amqp_url, prefix)
    try:
        yield url
    finally:
        delete_vhost(url)
