"""The scan service's decisions, with its dependencies replaced (nameko's worker_factory)."""

from unittest import mock

from eventlet.greenpool import GreenPool
from nameko.testing.services import worker_factory

from common.bus import PublishError, _BoundPublisher, derived_event_id
from common.db import BlobNotFound
from common.events import Envelope
from scan.clamd import Verdict
from scan.exceptions import ScannerUnavailable
from scan.service import ScanService


def event(message_id: str = "m1") -> Envelope:
    return Envelope.new(
        "mail.received",
        {
            "message_id": message_id,
            "sender": "a@ac-montpellier.fr",
            "recipients": ["b@ac-montpellier.fr"],
            "size": 3,
            "origin": "mx",
            "received_at": "2026-11-26T10:00:00.000Z",
        },
        source="ingest",
    )


EVENT = event()


def make_service(*verdicts, blobs=None, published=None):
    """The service; clamd answers `verdicts` in turn (a Verdict, or an exception it raises)."""
    clamd = mock.Mock(pool=GreenPool(4))
    clamd.scanner.scan.side_effect = list(verdicts)
    store = mock.Mock()
    store.get_many.side_effect = lambda ids: blobs if blobs is not None else [b"raw"] * len(ids)
    service = worker_factory(ScanService, clamd=clamd, blobs=store)
    service.verdicts.record_many.side_effect = lambda pairs: [None] * len(pairs)
    # The real publishing helpers, on a broker replaced by a mock that answers `published`.
    broker = mock.Mock(source="scan")
    broker.publish_many.side_effect = lambda events: published or [None] * len(events)
    service.publisher = _BoundPublisher(broker)
    return service


def published(service) -> list[tuple]:
    """(type, payload, parent) of every event published: EVENT when its id derives from EVENT's."""
    events = [e for call in service.publisher._publisher.publish_many.call_args_list for e in call.args[0]]
    parents = {derived_event_id(EVENT, t): EVENT for t in ("mail.scanned", "mail.infected")}
    return [(e.type, e.payload, parents.get(e.event_id)) for e in events]


def test_clean_mail_goes_to_the_spam_stage():
    service = make_service(Verdict(False, "", "ClamAV 1.4"))
    assert service.on_mail_received([EVENT]) == [None]
    [(event_type, payload, parent)] = published(service)
    assert event_type == "mail.scanned"
    assert payload["scanner"] == "ClamAV 1.4"
    assert payload["received_at"] == "2026-11-26T10:00:00.000Z"
    assert "size" not in payload
    assert parent is EVENT


def test_infected_mail_goes_to_quarantine_with_its_signature():
    service = make_service(Verdict(True, "Win.Test.EICAR", "ClamAV 1.4"))
    service.on_mail_received([EVENT])
    [(event_type, payload, _)] = published(service)
    assert (event_type, payload["signature"]) == ("mail.infected", "Win.Test.EICAR")
    [(message_id, recorded)] = service.verdicts.record_many.call_args.args[0]
    assert (message_id, recorded.label) == ("m1", "infected")


def test_no_verdict_means_no_event_and_an_error_for_the_retry_machinery():
    service = make_service(ScannerUnavailable("clamd down"))
    [outcome] = service.on_mail_received([EVENT])
    assert isinstance(outcome, ScannerUnavailable)
    assert published(service) == []


def test_in_a_batch_each_message_gets_its_own_outcome():
    """One clean, one infected, one clamd could not scan, one whose blob is gone, one whose event the
    broker refused: only the scanned ones are recorded, only the failures are handed back."""
    events = [event(f"m{n}") for n in range(5)]
    refused = PublishError("nacked", "nacked")
    service = make_service(
        Verdict(False, "", "ClamAV"),
        Verdict(True, "Win.Test.EICAR", "ClamAV"),
        ScannerUnavailable("clamd down"),
        Verdict(False, "", "ClamAV"),
        blobs=[b"a", b"b", b"c", BlobNotFound("m3"), b"e"],
        published=[None, None, refused],
    )
    outcomes = service.on_mail_received(events)
    assert outcomes[0] is None and outcomes[1] is None
    assert isinstance(outcomes[2], ScannerUnavailable)
    assert isinstance(outcomes[3], BlobNotFound)
    assert outcomes[4] is refused
    recorded = [message_id for message_id, _ in service.verdicts.record_many.call_args.args[0]]
    assert recorded == ["m0", "m1", "m4"]
    assert [(kind, payload["message_id"]) for kind, payload, _ in published(service)] == [
        ("mail.scanned", "m0"),
        ("mail.infected", "m1"),
        ("mail.scanned", "m4"),
    ]
