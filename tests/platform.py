"""The whole platform as real processes on a scratch database, for end-to-end tests and benchmarks.

`running_platform(folder, people, password)` starts the directory (gRPC), creates and activates the
accounts of `people` (last name, first name), then starts ingest (SMTP), scan, spam (with a small model
trained on the corpus), delivery and notify, all against the real RabbitMQ, clamd and database, a
smarthost sink standing in for the outside world, and yields what a test needs to talk to them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.db import get_client
from spam.registry import ModelRegistry
from spam.testing import corpus_or_skip, small_model
from tests.helpers import free_port
from tests.pipeline import purge_pipeline_queues, running_stages
from tests.smtp_sink import SmtpSink

PIPELINE = ["ingest", "scan", "spam", "delivery", "notify"]


@contextmanager
def running_platform(
    folder: Path, people: list[tuple[str, str]], password: str, **settings: str
) -> Iterator[dict]:
    from directory.client import DirectoryClient
    from directory.testing import TEST_ESTABLISHMENTS, make_numen, make_person

    corpus_or_skip()
    name = f"test_platform_{uuid.uuid4().hex[:8]}"
    client = get_client()
    database = client[name]
    registry = ModelRegistry(database)
    registry.ensure_indexes()
    registry.activate(registry.publish(small_model(42)))
    purge_pipeline_queues()
    directory_address = f"127.0.0.1:{free_port()}"
    mx, submission = free_port(), free_port()
    try:
        with SmtpSink() as smarthost:
            env = {
                "DIRECTORY_ADDRESS": directory_address,
                "ARGON2_TIME_COST": "1",
                "ARGON2_MEMORY_KIB": "1024",
                "ARGON2_PARALLELISM": "1",
                "SMTP_MX_PORT": str(mx),
                "SMTP_SUBMISSION_PORT": str(submission),
                "SMARTHOST": f"127.0.0.1:{smarthost.port}",
                "EVENT_RETRY_DELAYS": "1",
                "RELAY_POLL_SECONDS": "0.5",
                "INGEST_HOSTNAME": "mx.test.invalid",
                "SUBMISSION_SERVICE_SECRET": uuid.uuid4().hex,
                **settings,
            }
            with running_stages(["directory"], name, folder, **env):
                directory = DirectoryClient(directory_address)
                directory.load_establishments(TEST_ESTABLISHMENTS)
                addresses = {}
                for last, first in people:
                    numen = make_numen()
                    _, _, account = directory.create_account(
                        make_person(last_name=last, first_name=first, numen=numen)
                    )
                    directory.change_password(account.address, numen, password)
                    addresses[first] = account.address
                with running_stages(PIPELINE, name, folder, **env) as procs:
                    yield {
                        "db": database,
                        "mx": mx,
                        "submission": submission,
                        "smarthost": smarthost,
                        "people": addresses,
                        "directory": directory,
                        "procs": procs,
                        "env": env,
                        "database_name": name,
                    }
                directory.close()
    finally:
        client.drop_database(name)
        purge_pipeline_queues()
