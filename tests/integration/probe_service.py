"""A nameko service used by the bus tests: it consumes `probe.ping` through the real broker.

It records each event it handles in the database (idempotently, by event id) and fails on purpose while
the `probe_switch` collection holds a `{"_id": "fail"}` document, which lets a test watch an event go
through its retries to the dead-letter queue and come back with `common.deadletters replay`.

`probe.batch` events go to a batch handler (`common.bus.batch_event_handler`), which records each event
with the size of the batch it came in, and fails on purpose the events whose `n` is negative (the
others of their batch are handled).
Run as a process: `python tests/integration/probe_service.py` (settings from the environment).
"""

from common.nameko_runner import run_service  # noqa: I001 - must come first (eventlet)

import os

from pymongo.errors import DuplicateKeyError

from common.bus import batch_event_handler, event_handler
from common.db import get_database, utcnow
from common.events import EventType, register_event_type
from common.topology import ConsumerSpec, register_consumer

register_event_type(EventType("probe.ping", 1, {"n": int}, "bus test probe"))
register_consumer(ConsumerSpec("probe", "probe.ping"))
register_event_type(EventType("probe.batch", 1, {"n": int}, "bus test probe, batch handler"))
register_consumer(ConsumerSpec("probe", "probe.batch"))


class ProbeService:
    name = "probe"

    @event_handler("probe.ping")
    def on_ping(self, envelope):
        db = get_database()
        if db.probe_switch.find_one({"_id": "fail"}):
            raise RuntimeError("probe failure requested by the test")
        try:
            db.probe_received.insert_one(
                {
                    "_id": envelope.event_id,
                    "n": envelope.payload["n"],
                    "trace_id": envelope.trace_id,
                    "at": utcnow(),
                }
            )
        except DuplicateKeyError:
            pass  # a redelivery: the effect is already there

    @batch_event_handler("probe.batch", max_batch=20)
    def on_batch(self, envelopes):
        db = get_database()
        outcomes = []
        for envelope in envelopes:
            if envelope.payload["n"] < 0:
                outcomes.append(ValueError(f"negative probe {envelope.payload['n']}"))
                continue
            try:
                db.probe_received.insert_one(
                    {"_id": envelope.event_id, "n": envelope.payload["n"], "batch": len(envelopes)}
                )
            except DuplicateKeyError:
                pass
            outcomes.append(None)
        return outcomes


if __name__ == "__main__":
    run_service(ProbeService, "probe", int(os.environ["PROBE_METRICS_PORT"]))
