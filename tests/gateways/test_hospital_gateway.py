"""The hospital-records gateway over real HTTP: answers, faults, and what review gets."""

import asyncio
from collections.abc import Iterator
from datetime import date

import pytest

from broker import http
from broker.hospital import fetch_evidence
from broker.http import Unavailable
from broker.payments import DebitItem, debit
from broker.settings import use_settings
from domain.records import Condition, Reply
from domain.services.claims import EvidenceRequest
from sandbox.hospital import load_records, make_hospital_app
from sandbox.server import serving
from tests.gateways.conftest import faults, records_file

ASKED = EvidenceRequest("P-1", "C73", date(2026, 10, 2), joined_on=date(2024, 1, 5))


async def test_the_records_confirm_the_diagnosis_and_show_what_came_before(gateway_settings):
    evidence = await fetch_evidence(ASKED)
    assert evidence.reply == Reply.FOUND
    assert evidence.diagnosis == [Condition("C73", date(2026, 10, 2), "active")]
    assert evidence.earlier == [Condition("C73.0", date(2019, 5, 1), "resolved")]


async def test_an_unknown_patient_is_an_answer_not_an_error(gateway_settings):
    request = EvidenceRequest("P-404", "C73", date(2026, 10, 2), date(2024, 1, 5))
    assert (await fetch_evidence(request)).reply == Reply.UNKNOWN_PATIENT


async def test_server_errors_are_retried_until_the_hospital_answers(gateway_settings, hospital_url):
    await faults(hospital_url, fail_next=2)  # two 503s, then answers
    assert (await fetch_evidence(ASKED)).reply == Reply.FOUND


async def test_a_hospital_that_keeps_failing_is_unavailable(gateway_settings, hospital_url):
    await faults(hospital_url, fail_next=10)
    with pytest.raises(Unavailable, match="503"):
        await fetch_evidence(ASKED)


async def test_time_outs_are_retried_then_reported_unavailable(gateway_settings, hospital_url):
    await faults(hospital_url, timeout_next=10, hang_seconds=5)
    with pytest.raises(Unavailable, match="Timeout"):
        await fetch_evidence(ASKED)


async def test_a_time_out_then_an_answer_succeeds(gateway_settings, hospital_url):
    await faults(hospital_url, timeout_next=1, hang_seconds=5)
    assert (await fetch_evidence(ASKED)).reply == Reply.FOUND


async def test_malformed_json_is_unreadable_evidence_never_an_approval(
    gateway_settings, hospital_url
):
    await faults(hospital_url, malformed_next=2)
    evidence = await fetch_evidence(ASKED)
    assert evidence.reply == Reply.UNREADABLE and evidence.diagnosis == []


@pytest.fixture
def counted_hospital(tmp_path, gateway_settings) -> Iterator[set[int]]:
    """The sandbox hospital, noting the client port of every request it serves: a port seen
    again is a connection used again."""
    ports: set[int] = set()
    app = make_hospital_app(load_records(records_file(tmp_path)))

    async def noting(scope, receive, send):
        if scope["type"] == "http":
            ports.add(scope["client"][1])
        await app(scope, receive, send)

    with serving(noting) as url:
        use_settings(gateway_settings.model_copy(update={"hospital_url": url}))
        yield ports


def test_calls_from_tasks_keep_their_client_and_its_connections(counted_hospital):
    replies = [http.run(fetch_evidence(ASKED)).reply for _ in range(5)]
    assert replies == [Reply.FOUND] * 5
    # Ten requests, two at a time, over the two connections the first call opened.
    assert len(counted_hospital) == 2


def test_calls_on_a_loop_of_their_own_close_their_client(counted_hospital):
    replies = [asyncio.run(fetch_evidence(ASKED)).reply for _ in range(3)]
    assert replies == [Reply.FOUND] * 3
    assert len(counted_hospital) == 6  # a new client, and new connections, every time


def test_each_in_process_sandbox_keeps_a_client_of_its_own(gateway_settings):
    use_settings(gateway_settings.model_copy(update={"hospital_url": "", "payments_url": ""}))
    assert http.run(fetch_evidence(ASKED)).reply == Reply.FOUND
    # Both services have the same (empty) URL: the hospital's client must not take this call.
    [result] = http.run(debit([DebitItem("charge:9:9:1", "PAYER", 742)]))
    assert (result.key, result.succeeded) == ("charge:9:9:1", True)
