"""The scan service's decisions, with its dependencies replaced (nameko's worker_factory)."""

from unittest import mock

import pytest
from nameko.testing.services import worker_factory

from common.events import Envelope
from scan.clamd import Verdict
from scan.exceptions import ScannerUnavailable
from scan.service import ScanService

EVENT = Envelope.new(
    "mail.received",
    {
        "message_id": "m1",
        "sender": "a@ac-montpellier.fr",
        "recipients": ["b@ac-montpellier.fr"],
        "size": 3,
        "origin": "mx",
        "received_at": "2026-11-26T10:00:00.000Z",
    },
    source="ingest",
)


def make_service(verdict=None, error=None):
    clamd = mock.Mock()
    clamd.scan.side_effect = error
    clamd.scan.return_value = verdict
    blobs = mock.Mock()
    blobs.get.return_value = b"raw"
    return worker_factory(ScanService, clamd=clamd, blobs=blobs)


def test_clean_mail_goes_to_the_spam_stage():
    service = make_service(Verdict(False, "", "ClamAV 1.4"))
    service.on_mail_received(EVENT)
    event_type, payload = service.publisher.publish.call_args.args
    assert event_type == "mail.scanned"
    assert payload["scanner"] == "ClamAV 1.4"
    assert payload["received_at"] == "2026-11-26T10:00:00.000Z"
    assert "size" not in payload
    assert service.publisher.publish.call_args.kwargs["parent"] is EVENT


def test_infected_mail_goes_to_quarantine_with_its_signature():
    service = make_service(Verdict(True, "Win.Test.EICAR", "ClamAV 1.4"))
    service.on_mail_received(EVENT)
    event_type, payload = service.publisher.publish.call_args.args
    assert (event_type, payload["signature"]) == ("mail.infected", "Win.Test.EICAR")
    message_id, recorded = service.verdicts.record.call_args.args
    assert (message_id, recorded.label) == ("m1", "infected")


def test_no_verdict_means_no_event_and_an_error_for_the_retry_machinery():
    service = make_service(error=ScannerUnavailable("clamd down"))
    with pytest.raises(ScannerUnavailable):
        service.on_mail_received(EVENT)
    service.publisher.publish.assert_not_called()
