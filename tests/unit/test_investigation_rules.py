"""The investigation's rules, pure: who works a case, what findings and evidence are
accepted, and which decisions go against the findings."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from domain.claims import Reason
from domain.investigations import (
    EVIDENCE_MAX_BYTES,
    FINDING_REASONS,
    Finding,
    against_findings,
    content_key,
    decider_refusal,
    due,
    evidence_refusal,
    finding_refusal,
    holder_refusal,
)
from domain.plans import get_plan


def test_findings_are_due_the_plans_days_after_the_case_opens():
    opened = datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert due(opened, get_plan("critical-illness")) == opened + timedelta(days=10)


def test_only_the_assigned_investigator_holds_the_case():
    assert "not assigned" in holder_refusal("inv-zhao", None)
    assert "assigned to inv-sun" in holder_refusal("inv-zhao", "inv-sun")
    assert holder_refusal("inv-sun", "inv-sun") is None


@pytest.mark.parametrize("reason", FINDING_REASONS)
def test_findings_against_a_claim_carry_one_of_the_facts_reasons(reason):
    assert finding_refusal(Finding.CONTRADICTS, reason) is None
    assert finding_refusal(Finding.SUPPORTS, reason) is not None


def test_findings_against_a_claim_cannot_carry_a_rule_of_the_plan_or_nothing():
    assert finding_refusal(Finding.CONTRADICTS, None) is not None
    assert finding_refusal(Finding.CONTRADICTS, Reason.INSIDE_WAITING_PERIOD) is not None
    assert finding_refusal(Finding.INCONCLUSIVE, None) is None


@pytest.mark.parametrize(
    ("approve", "finding", "against"),
    [
        (True, Finding.CONTRADICTS, True),
        (False, Finding.SUPPORTS, True),
        (True, Finding.SUPPORTS, False),
        (False, Finding.CONTRADICTS, False),
        (True, Finding.INCONCLUSIVE, False),
        (False, Finding.INCONCLUSIVE, False),
    ],
)
def test_a_decision_against_the_findings_is_seen(approve, finding, against):
    assert against_findings(approve, [finding]) is against


def test_a_later_case_does_not_wash_out_an_earlier_finding():
    assert against_findings(True, [Finding.CONTRADICTS, Finding.INCONCLUSIVE])
    assert against_findings(False, [Finding.SUPPORTS, Finding.INCONCLUSIVE])
    assert not against_findings(True, [])


def test_who_investigated_a_claim_does_not_decide_it():
    assert "investigated the claim" in decider_refusal("dr-li", ["inv-zhao", "dr-li"])
    assert decider_refusal("dr-li", ["inv-zhao"]) is None


PDF = b"%PDF-1.4 report"


def test_evidence_files_are_of_a_known_type_and_size():
    assert evidence_refusal(PDF, "application/pdf") is None
    assert evidence_refusal(b"\xff\xd8\xff\xe0" + b"0" * 100, "image/jpeg") is None
    assert evidence_refusal(b"\x89PNG\r\n\x1a\n....", "image/png") is None
    assert evidence_refusal("出院小结: 确诊".encode(), "text/plain") is None
    assert "empty" in evidence_refusal(b"", "image/png")
    assert "at most" in evidence_refusal(PDF + b"0" * EVIDENCE_MAX_BYTES, "application/pdf")
    assert "not accepted" in evidence_refusal(b"<p>", "text/html")
    assert "no type" in evidence_refusal(PDF, "")


@pytest.mark.parametrize(
    ("data", "claimed"),
    [
        (b"<html><script>alert(1)</script>", "image/png"),
        (b"  <html>", "text/plain"),
        (b"\xff\xfe not utf-8", "text/plain"),
        (b"\x89PNG\r\n\x1a\n", "application/pdf"),
        (b"%PDF-1.4", "image/jpeg"),
    ],
)
def test_an_evidence_file_must_be_the_type_it_is_sent_as(data, claimed):
    assert "are not" in evidence_refusal(data, claimed)


def test_an_evidence_files_name_is_its_sha256():
    assert content_key(b"abc") == hashlib.sha256(b"abc").hexdigest()
