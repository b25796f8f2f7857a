"""The hospital-records gateway over real HTTP: answers, faults, and what review gets."""

from datetime import date

import pytest

from broker.hospital import fetch_evidence
from broker.http import Unavailable
from domain.records import Condition, Reply
from domain.services.claims import EvidenceRequest
from tests.gateways.conftest import faults

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
