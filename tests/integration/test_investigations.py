"""Investigations: a flagged claim goes to an investigator and comes back to a reviewer with
findings; only the case's investigator works it; evidence lives in the store by its hash; a
decision against the findings rests on two reviewers; a disputed claim's re-review waits for
its case; the audit finds a claim stranded or decided alone against the findings."""

import hashlib
import json
from datetime import timedelta

import pytest
from sqlmodel import select

from broker.database import engine
from broker.evidence import EvidenceCorrupt, evidence_store
from broker.proofkeys import proof_keys
from domain.claims import Reason
from domain.db import transaction
from domain.investigations import EVIDENCE_MAX_BYTES, Cause, Finding
from domain.models import (
    Claim,
    ClaimEvent,
    EvidenceFile,
    Investigation,
    Objection,
    ReviewTask,
)
from domain.records import Condition, Evidence, Reply
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import disputes, investigations, review
from domain.services import flags as flag_service
from tests.integration.api_support import serving
from tests.integration.scenario import (
    CRITICAL,
    NOW_UTC,
    enrol,
    member,
    membership,
    reviewer_code,
    submission,
)
from tests.integration.support import huzhu, run_worker, wait_until
from tests.integration.test_disputes import claim_through_rules, object_to, publish

LATER = NOW_UTC + timedelta(hours=1)
LATEST = NOW_UTC + timedelta(hours=2)
PDF = b"%PDF-1.4 discharge summary, ward 5\n"


def step(work, *args):
    with transaction(engine()) as session:
        return work(session, *args)


def state(sid: str) -> str:
    return step(lambda s: claim_service.find_claim(s, sid).state)


def flagged(sid: str = "early") -> int:
    """A claim the rules approve but the early flag sends to an investigator; its case's id."""
    # Joined 110 days ago: diagnosed 10 days ago, 10 days after the waiting period ended.
    enrol([member("EARLY", CRITICAL, 45, joined_days_ago=110)])
    claim_id = claim_through_rules(submission(sid, "EARLY", "C73"))
    assert state(sid) == "investigating"
    case = step(investigations.open_case_of, claim_id)
    assert case is not None and case.id is not None
    return case.id


def assigned(case_id: int, investigator: str = "inv-zhao", firm: str | None = None) -> None:
    step(investigations.assign, case_id, investigator, firm, "lead-qian", LATER)


def findings(case_id: int, finding: Finding, reason: Reason | None = None, by="inv-zhao"):
    return step(investigations.close, case_id, by, finding, reason, "visited the ward", LATER)


def problems() -> list[str]:
    with transaction(engine()) as session:
        return audit_service.audit(session, keys=proof_keys()).problems


def test_a_flagged_claim_opens_a_case_due_by_the_plan_and_leaves_the_review_queue(sqlite_stack):
    case_id = flagged()
    with transaction(engine()) as session:
        case = session.get(Investigation, case_id)
        assert (case.cause, case.opened_by, case.investigator) == ("flagged", "rules", None)
        assert case.due_at - case.opened_at == timedelta(days=10)
        assert session.exec(select(ReviewTask)).all() == []  # nothing for a reviewer yet
        # The member is told when a decision is due: the findings, then the review's 72 hours.
        due = review.decision_due(session, case.claim_id)
        assert due == case.due_at + timedelta(hours=72)
        assert [c.id for c, _ in investigations.open_cases(session)] == [case_id]
    assert problems() == []


def test_only_the_cases_investigator_adds_to_it_and_closes_it(sqlite_stack):
    case_id = flagged()
    with pytest.raises(investigations.Refused, match="not assigned"):
        step(investigations.add_note, case_id, "inv-zhao", "called the ward", LATER)
    assigned(case_id, "inv-sun", "平安调查评估")
    with pytest.raises(investigations.Refused, match="assigned to inv-sun"):
        findings(case_id, Finding.SUPPORTS, by="inv-zhao")
    step(investigations.add_note, case_id, "inv-sun", "called the ward", LATER)
    with pytest.raises(investigations.Refused, match="need a reason"):
        findings(case_id, Finding.CONTRADICTS, by="inv-sun")
    with pytest.raises(investigations.Refused, match="carry a reason"):
        findings(case_id, Finding.SUPPORTS, Reason.CRITERIA_NOT_MET, by="inv-sun")
    assert state("early") == "investigating"  # nothing refused moved it
    findings(case_id, Finding.SUPPORTS, by="inv-sun")
    with pytest.raises(investigations.Refused, match="was closed"):
        step(investigations.add_note, case_id, "inv-sun", "one more thing", LATEST)
    with transaction(engine()) as session:
        found = investigations.case_file(session, case_id)
        assert [n.text for n in found.notes] == [
            "assigned to inv-sun (平安调查评估)",
            "called the ward",
        ]
        assert found.case.firm == "平安调查评估"
    assert state("early") == "needs_review"
    [waiting] = step(review.queue)
    assert waiting.claim.submission_id == "early" and waiting.task.due_at == LATER + timedelta(
        hours=72
    )


def test_evidence_is_stored_by_its_hash_outside_the_database_and_checked_when_read(sqlite_stack):
    case_id = flagged()
    assigned(case_id)
    add = investigations.add_evidence
    store = evidence_store()
    first = step(add, case_id, "inv-zhao", PDF, "application/pdf", "出院小结", store, LATER)
    again = step(add, case_id, "inv-zhao", PDF, "application/pdf", "copy", store, LATEST)
    assert first.id == again.id and first.sha256 == hashlib.sha256(PDF).hexdigest()
    path = store.root / first.sha256[:2] / first.sha256
    assert path.read_bytes() == PDF
    with transaction(engine()) as session:
        rows = session.exec(select(EvidenceFile)).all()
        assert [(r.label, r.size_bytes) for r in rows] == [("出院小结", len(PDF))]
    for data, kind, why in [
        (b"", "application/pdf", "empty"),
        (PDF + b"x" * EVIDENCE_MAX_BYTES, "application/pdf", "at most"),
        (b"MZ\x90\x00", "application/x-msdownload", "not accepted"),
    ]:
        with pytest.raises(investigations.Refused, match=why):
            step(add, case_id, "inv-zhao", data, kind, "", store, LATER)
    assert store.get(first.sha256) == PDF
    path.write_bytes(PDF + b"altered")
    with pytest.raises(EvidenceCorrupt):
        store.get(first.sha256)


@pytest.mark.parametrize(
    ("finding", "reason", "approve", "second"),
    [
        (Finding.CONTRADICTS, Reason.UNDISCLOSED_CONDITION, True, True),
        (Finding.SUPPORTS, None, False, True),
        (Finding.SUPPORTS, None, True, False),
        (Finding.INCONCLUSIVE, None, True, False),
    ],
)
def test_a_decision_against_the_findings_waits_for_a_second_reviewer(
    sqlite_stack, finding, reason, approve, second
):
    case_id = flagged()
    assigned(case_id)
    findings(case_id, finding, reason)
    claim_id = step(lambda s: s.get(Investigation, case_id).claim_id)
    assert step(review.findings_of, claim_id) == finding
    decided = step(review.decide, "early", approve, "dr-li", LATEST)
    expected = "awaiting_second_review" if second else "approved"
    assert decided.state == expected
    if second:
        with pytest.raises(review.Refused, match="four eyes"):
            step(review.decide, "early", approve, "dr-li", LATEST)
        assert step(review.decide, "early", approve, "dr-wang", LATEST).state in (
            "approved",
            "rejected",
        )
    assert problems() == []


def test_a_reviewer_sends_a_claim_they_hold_to_an_investigator_and_gets_it_back(sqlite_stack):
    enrol(membership(30, 0))
    claim_through_rules(submission("person", "C0005", reviewer_code()))
    step(review.take, "person", "dr-li", NOW_UTC)
    with pytest.raises(review.Refused, match="taken by dr-li"):
        step(review.investigate, "person", "check the pathology", "dr-wang", LATER)
    with pytest.raises(review.Refused, match="say what"):
        step(review.investigate, "person", "  ", "dr-li", LATER)
    case = step(review.investigate, "person", "check the pathology", "dr-li", LATER)
    assert (case.cause, state("person")) == ("reviewer", "investigating")
    assert step(review.queue) == []
    with pytest.raises(investigations.Refused, match="already has an open investigation"):
        step(open_another, case.claim_id)
    assigned(case.id)
    findings(case.id, Finding.INCONCLUSIVE)
    for reviewer in ("dr-li", "dr-wang"):  # 300,000 yuan: four eyes, whatever was found
        decided = step(review.decide, "person", True, reviewer, LATEST)
    assert decided.state == "approved"
    with pytest.raises(review.Refused, match="approved, not waiting"):
        step(review.investigate, "person", "again", "dr-li", LATEST)


def open_another(session, claim_id: int):
    claim = session.get(Claim, claim_id)
    return investigations.open_for(session, claim, Cause.REVIEWER, "again", "dr-li", LATER)


def test_a_disputed_claims_re_review_waits_for_its_investigation(sqlite_stack):
    enrol(membership(20, 0))
    claim_through_rules(submission("case-a", "C0005", "C73"))
    publish()
    objection = object_to("case-a", "C0001")
    case = step(review.investigate, "case-a", "the objector says she works", "dr-li", LATER)
    assert (case.cause, state("case-a")) == ("disputed", "objected")
    with pytest.raises(disputes.Refused, match="findings come first"):
        step(disputes.decide_objection, objection, False, "dr-li", "", LATER)
    assigned(case.id)
    findings(case.id, Finding.SUPPORTS)
    assert state("case-a") == "objected"  # the re-review decides, now with the findings
    step(disputes.decide_objection, objection, False, "dr-li", "the findings support it", LATEST)
    assert state("case-a") == "announced"
    assert problems() == []


def test_a_related_condition_before_joining_flags_the_claim(sqlite_stack):
    enrol([member("PRIOR", CRITICAL, 45, joined_days_ago=400)])
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(
            session, submission("prior", "PRIOR", "C34.1"), NOW_UTC
        )
    step(claim_service.accept, claim_id, NOW_UTC)
    with transaction(engine()) as session:
        request = claim_service.evidence_request(session, claim_id)
        evidence = Evidence(
            Reply.FOUND,
            diagnosis=[Condition("C34.1", request.diagnosed_on, "active")],
            # Two years before joining: a benign growth in the chest, not lung cancer itself.
            earlier=[Condition("D38.1", NOW_UTC.date() - timedelta(days=1100), "resolved")],
        )
        claim_service.review_claim(session, claim_id, NOW_UTC, evidence)
    assert state("prior") == "approved"  # D38 is in D37-D48, not C30-C39: no flag
    enrol([member("PRIOR2", CRITICAL, 45, joined_days_ago=400)])
    with transaction(engine()) as session:
        other, _ = claim_service.record_submission(
            session, submission("prior2", "PRIOR2", "I21.0"), NOW_UTC
        )
    step(claim_service.accept, other, NOW_UTC)
    with transaction(engine()) as session:
        request = claim_service.evidence_request(session, other)
        evidence = Evidence(
            Reply.FOUND,
            diagnosis=[Condition("I21.0", request.diagnosed_on, "active")],
            # Angina two years before joining: not a covered illness, but in I20-I25 with the
            # heart attack claimed.
            earlier=[Condition("I20.0", NOW_UTC.date() - timedelta(days=1100), "active")],
        )
        claim_service.review_claim(session, other, NOW_UTC, evidence)
    assert state("prior2") == "investigating"
    with transaction(engine()) as session:
        assert [f.rule for f in flag_service.of_claim(session, other)] == ["prior"]


def test_the_audit_finds_a_stranded_claim_and_a_lone_decision_against_the_findings(sqlite_stack):
    case_id = flagged()
    assigned(case_id)
    with transaction(engine()) as session:
        session.get(Investigation, case_id).closed_at = LATER  # closed, the claim not moved on
    assert any("investigating, but no case is open" in p for p in problems())
    with transaction(engine()) as session:
        case = session.get(Investigation, case_id)
        case.closed_at = None
    findings(case_id, Finding.CONTRADICTS, Reason.UNDISCLOSED_CONDITION)
    assert problems() == []
    # Past the queue's rule: one reviewer approves against the findings.
    step(claim_service.decide, "early", True, "dr-li", LATEST)
    assert any("approved by reviewer:dr-li alone" in p for p in problems())


def test_staff_work_a_case_over_http_and_members_see_only_its_stage(sqlite_stack, tokens):
    case_id = flagged()
    reviewer, lead = tokens("DR-LI", "reviewer"), tokens("LEAD-QIAN", "investigator")
    investigator, claimant = tokens("INV-ZHAO", "investigator"), tokens("EARLY")
    base = f"/v1/investigations/{case_id}"
    with serving() as api:
        refused = api.post(f"{base}/assignment", json={"investigator": "x"}, headers=reviewer)
        assert refused.status_code == 403
        listed = api.get("/v1/investigations", headers=reviewer).json()
        assert [c["case_id"] for c in listed] == [case_id]
        firm = {"investigator": "INV-ZHAO", "firm": "平安调查评估"}
        given = api.post(f"{base}/assignment", json=firm, headers=lead)
        assert given.status_code == 200 and given.json()["firm"] == "平安调查评估"
        sent = api.post(
            f"{base}/evidence?label=出院小结",
            content=PDF,
            headers=investigator | {"Content-Type": "application/pdf"},
        )
        assert sent.status_code == 201, sent.text
        sha = sent.json()["sha256"]
        assert sha == hashlib.sha256(PDF).hexdigest()
        read = api.get(f"{base}/evidence/{sha}", headers=reviewer)
        assert (read.content, read.headers["content-type"]) == (PDF, "application/pdf")
        bad = api.post(
            f"{base}/evidence",
            content=b"#!/bin/sh",
            headers=investigator | {"Content-Type": "application/x-sh"},
        )
        assert (bad.status_code, bad.json()["type"].rsplit("/", 1)[1]) == (
            409,
            "investigation-refused",
        )
        large = api.post(
            f"{base}/evidence",
            content=b"x" * (EVIDENCE_MAX_BYTES + 1),
            headers=investigator | {"Content-Type": "application/pdf"},
        )
        assert large.status_code == 413
        mine = api.get("/v1/claims/early", headers=claimant).json()
        assert mine["state"] == "investigating" and mine["decision_due_at"]
        assert all(e["reason"] is None for e in mine["history"] if e["to_state"] == "investigating")
        unreasoned = {"finding": "contradicts", "summary": "x"}
        wrong = api.post(f"{base}/findings", json=unreasoned, headers=investigator)
        assert wrong.status_code == 409
        done = api.post(
            f"{base}/findings",
            json={"finding": "contradicts", "reason": "undisclosed_condition", "summary": "seen"},
            headers=investigator,
        )
        assert done.status_code == 200 and done.json()["finding"] == "contradicts"
        [queued] = api.get("/v1/review/claims", headers=reviewer).json()
        assert queued["findings"] == "contradicts"
        full = api.get(base, headers=investigator).json()
        assert [e["sha256"] for e in full["evidence"]] == [sha]
        told = json.dumps(api.get("/v1/claims/early", headers=claimant).json()["history"])
        assert "visited" not in told and "contradicts" not in told and "early:" not in told
        metrics = api.get("/metrics").text
    assert 'huzhu_investigations_closed{cause="flagged",finding="contradicts"} 1.0' in metrics


def test_a_flagged_claim_goes_to_investigation_and_back_on_the_fleet(postgres_stack, tmp_path):
    """Real workers on PostgreSQL: the claim submitted as a producer does, flagged by the rules,
    investigated with the CLI, back with a reviewer, approved and scheduled by the worker."""
    enrol([*membership(20, 0), member("EARLY", CRITICAL, 45, joined_days_ago=110)])
    claims_file = tmp_path / "claims.jsonl"
    claims_file.write_text(submission("early", "EARLY", "C73") + "\n", encoding="utf-8")
    workers = run_worker(postgres_stack, concurrency=1)
    next(workers)
    try:
        huzhu(postgres_stack, "claims", "submit", str(claims_file))
        wait_until(lambda: state("early") == "investigating", 60, "the claim investigated")
        [case] = json.loads(huzhu(postgres_stack, "investigate", "list", "--json").stdout)["open"]
        assert case["cause"] == "flagged" and case["why"].startswith(claim_service.FLAGGED)
        number = str(case["case"])

        def run(*args: str, check: bool = True):
            return huzhu(postgres_stack, "investigate", *args, check=check)

        run("assign", number, "--to", "inv-zhao", "--firm", "平安调查评估", "--by", "lead-qian")
        report = tmp_path / "report.pdf"
        report.write_bytes(PDF)
        run("evidence", number, str(report), "--investigator", "inv-zhao")
        supports = ["--finding", "supports", "--summary", "diagnosed on the day claimed"]
        refused = run("findings", number, *supports, "--investigator", "inv-sun", check=False)
        assert refused.returncode == 1 and "assigned to inv-zhao" in refused.stderr
        run("findings", number, *supports, "--investigator", "inv-zhao")
        assert state("early") == "needs_review"
        [waiting] = json.loads(huzhu(postgres_stack, "review", "queue", "--json").stdout)["waiting"]
        assert (waiting["submission_id"], waiting["findings"]) == ("early", "supports")
        huzhu(postgres_stack, "review", "decide", "early", "--approve", "--reviewer", "dr-li")
        wait_until(lambda: state("early") == "scheduled", 60, "the claim scheduled")
    finally:
        workers.close()
    copy = tmp_path / "copy.pdf"
    run("fetch", number, hashlib.sha256(PDF).hexdigest(), "--out", str(copy))
    assert copy.read_bytes() == PDF
    with transaction(engine()) as session:
        early = claim_service.find_claim(session, "early")
        events = session.exec(
            select(ClaimEvent.actor, ClaimEvent.to_state).where(ClaimEvent.claim_id == early.id)
        ).all()
    assert ("investigator:inv-zhao", "needs_review") in events
    assert problems() == []


def test_html_sent_as_a_picture_is_refused_and_a_damaged_copy_is_mended_by_sending_it_again(
    sqlite_stack,
):
    case_id = flagged()
    assigned(case_id)
    store, add = evidence_store(), investigations.add_evidence
    page = b"<html><script>alert(1)</script></html>"
    with pytest.raises(investigations.Refused, match="are not image/png"):
        step(add, case_id, "inv-zhao", page, "image/png", "", store, LATER)
    sent = step(add, case_id, "inv-zhao", PDF, "application/pdf", "", store, LATER)
    path = store.root / sent.sha256[:2] / sent.sha256
    path.write_bytes(b"damaged")
    again = step(add, case_id, "inv-zhao", PDF, "application/pdf", "", store, LATEST)
    assert again.id == sent.id and store.get(sent.sha256) == PDF
    path.unlink()
    step(add, case_id, "inv-zhao", PDF, "application/pdf", "", store, LATEST)
    assert store.get(sent.sha256) == PDF


def test_a_claim_waiting_for_its_second_reviewer_keeps_its_first_decision(sqlite_stack):
    case_id = flagged()
    assigned(case_id)
    findings(case_id, Finding.CONTRADICTS, Reason.UNDISCLOSED_CONDITION)
    assert step(review.decide, "early", True, "dr-li", LATEST).state == "awaiting_second_review"
    with pytest.raises(review.Refused, match="waits for a second reviewer"):
        step(review.investigate, "early", "look again", "dr-li", LATEST)
    with pytest.raises(review.Refused, match="four eyes"):
        step(review.decide, "early", True, "dr-li", LATEST)
    assert state("early") == "awaiting_second_review"


def test_an_investigator_does_not_decide_and_a_later_case_does_not_wash_out_the_findings(
    sqlite_stack,
):
    case_id = flagged()
    assigned(case_id)
    findings(case_id, Finding.CONTRADICTS, Reason.UNDISCLOSED_CONDITION)
    # dr-li, a reviewer, sends it to a case of his own and files nothing against it.
    again = step(review.investigate, "early", "look again", "dr-li", LATEST)
    step(investigations.assign, again.id, "dr-li", None, "dr-li", LATEST)
    step(investigations.close, again.id, "dr-li", Finding.INCONCLUSIVE, None, "nothing", LATEST)
    for reviewer in ("inv-zhao", "dr-li"):
        with pytest.raises(review.Refused, match="investigated the claim"):
            step(review.take, "early", reviewer, LATEST)
        with pytest.raises(review.Refused, match="investigated the claim"):
            step(review.decide, "early", True, reviewer, LATEST)
    # The earlier finding still counts: an approval waits for a second reviewer.
    assert step(review.decide, "early", True, "dr-wang", LATEST).state == "awaiting_second_review"
    assert problems() == []
    # Past the queue's rules, the audit sees an investigator's own decision.
    with transaction(engine()) as session:
        session.exec(select(ReviewTask)).one().stage = "first"
    step(claim_service.decide, "early", True, "inv-zhao", LATEST)
    assert any("inv-zhao decided a claim they investigated" in p for p in problems())


def test_an_objections_re_review_against_the_findings_rests_on_two_reviewers(sqlite_stack):
    enrol(membership(20, 0))
    claim_through_rules(submission("case-a", "C0005", "C73"))
    publish()
    objection = object_to("case-a", "C0001")
    case = step(review.investigate, "case-a", "the objector says she works", "dr-li", LATER)
    assigned(case.id)
    findings(case.id, Finding.CONTRADICTS, Reason.UNDISCLOSED_CONDITION)
    decide = disputes.decide_objection
    with pytest.raises(disputes.Refused, match="investigated the claim"):
        step(decide, objection, False, "inv-zhao", "", LATEST)
    first = step(decide, objection, False, "dr-li", "kept", LATEST)
    assert (first.status, first.first_by, state("case-a")) == ("open", "dr-li", "objected")
    with pytest.raises(disputes.Refused, match="another reviewer"):
        step(decide, objection, False, "dr-li", "kept", LATEST)
    assert problems() == []
    # A second reviewer may decide with the findings alone, or confirm the first.
    assert step(decide, objection, False, "dr-wang", "kept", LATEST).status == "dismissed"
    assert state("case-a") == "announced"
    assert problems() == []
    with transaction(engine()) as session:
        session.exec(select(Objection)).one().first_by = None  # as if one person had decided
    assert any("dismissed by dr-wang alone" in p for p in problems())


def test_upholding_an_objection_the_findings_bear_out_rests_on_one_reviewer(sqlite_stack):
    enrol(membership(20, 0))
    claim_through_rules(submission("case-a", "C0005", "C73"))
    publish()
    objection = object_to("case-a", "C0001")
    case = step(review.investigate, "case-a", "the objector says she works", "dr-li", LATER)
    assigned(case.id)
    findings(case.id, Finding.CONTRADICTS, Reason.UNDISCLOSED_CONDITION)
    assert step(disputes.decide_objection, objection, True, "dr-li", "", LATEST).status == (
        "upheld"
    )
    assert state("case-a") == "rejected"
    assert problems() == []
