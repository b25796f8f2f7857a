"""The review queue: claims the rules send to a person get the plan's deadlines, are taken,
handed back and decided; a rejection and a large approval rest on two reviewers (four eyes),
who may disagree; overdue claims are escalated and shown first; the audit fails on a decision
that rested on one person."""

from datetime import timedelta

import pytest
from sqlmodel import select

from broker.database import engine
from broker.proofkeys import proof_keys
from broker.submit import send_step
from domain.claims import Reason
from domain.db import transaction
from domain.investigations import Finding
from domain.models import Claim, ClaimEvent, ReviewTask
from domain.plans import get_plan
from domain.records import Condition, Evidence, Reply
from domain.review import sample_draw, sampling_reason
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import flags as flag_service
from domain.services import investigations, review
from tests.integration.api_support import serving
from tests.integration.scenario import (
    CRITICAL,
    enrol,
    member,
    membership,
    reviewer_code,
    submission,
)
from tests.integration.support import run_worker, wait_until
from tests.integration.test_disputes import NOW_UTC, claim_through_rules

LATER = NOW_UTC + timedelta(hours=1)


def waiting(sid: str, ref: str, at=NOW_UTC) -> int:
    claim_id = claim_through_rules(submission(sid, ref, reviewer_code()), at)
    assert state(sid) == "needs_review"
    return claim_id


def state(sid: str) -> str:
    with transaction(engine()) as session:
        return claim_service.find_claim(session, sid).state


def step(work, *args):
    with transaction(engine()) as session:
        return work(session, *args)


def queue() -> list[tuple[str, str, bool, str | None]]:
    with transaction(engine()) as session:
        return [
            (
                w.claim.submission_id,
                w.task.stage,
                w.task.escalated_at is not None,
                w.task.assigned_to,
            )
            for w in review.queue(session)
        ]


def investigated(claim_id: int, finding: Finding, reason: Reason | None = None) -> None:
    """The claim's open case assigned and closed with `finding`: back to the review queue."""
    with transaction(engine()) as session:
        case = investigations.open_case_of(session, claim_id)
        assert case is not None and case.id is not None
        investigations.assign(session, case.id, "inv-zhao", None, "lead-qian", LATER)
        investigations.close(session, case.id, "inv-zhao", finding, reason, "visited", LATER)
    assert step(lambda s: s.get(Claim, claim_id).state) == "needs_review"


def problems() -> list[str]:
    with transaction(engine()) as session:
        return audit_service.audit(session, keys=proof_keys()).problems


def test_a_claim_for_a_person_gets_the_plans_deadlines_and_one_reviewer_at_a_time(sqlite_stack):
    enrol(membership(30, 0))
    claim_id = waiting("first", "C0005")
    waiting("second", "C0006", LATER)
    with transaction(engine()) as session:
        task = session.get(ReviewTask, claim_id)
        assert task.due_at - task.opened_at == timedelta(hours=72)
        assert task.escalate_at - task.opened_at == timedelta(hours=48)
    assert [q[0] for q in queue()] == ["first", "second"]  # by due time
    step(review.take, "first", "dr-li", LATER)
    with pytest.raises(review.Refused, match="taken by dr-li"):
        step(review.take, "first", "dr-wang", LATER)
    with pytest.raises(review.Refused, match="taken by dr-li"):
        step(review.decide, "first", True, "dr-wang", LATER)
    with pytest.raises(review.Refused, match="only its reviewer"):
        step(review.release, "first", "dr-wang", LATER)
    step(review.release, "first", "dr-li", LATER)
    step(review.take, "first", "dr-wang", LATER)
    assert queue()[0] == ("first", "first", False, "dr-wang")
    with transaction(engine()) as session:  # each step an event with its reviewer
        actors = session.exec(select(ClaimEvent.actor).where(ClaimEvent.claim_id == claim_id))
        assert {"reviewer:dr-li", "reviewer:dr-wang"} <= set(actors)


def test_overdue_claims_are_escalated_once_and_shown_first(sqlite_stack):
    enrol(membership(30, 0))
    waiting("early", "C0005")
    waiting("late", "C0006", NOW_UTC + timedelta(hours=2))
    assert step(review.escalate_overdue, NOW_UTC + timedelta(hours=49)) == ["early"]
    assert step(review.escalate_overdue, NOW_UTC + timedelta(hours=49)) == []  # once
    assert step(review.escalate_overdue, NOW_UTC + timedelta(hours=51)) == ["late"]
    with transaction(engine()) as session:
        shown = review.queue(session)
        assert [w.overdue(NOW_UTC + timedelta(hours=73)) for w in shown] == [True, False]


def test_a_large_approval_waits_for_a_second_reviewer_who_is_not_the_first(sqlite_stack):
    enrol(membership(30, 0))
    waiting("big", "C0005")  # 35 years old: 300,000 yuan, the plan's threshold
    first = step(review.decide, "big", True, "dr-li", LATER)
    assert first.state == "awaiting_second_review" and first.amount_fen == 30_000_000
    with pytest.raises(review.Refused, match="four eyes"):
        step(review.decide, "big", True, "dr-li", LATER)
    assert queue() == [("big", "second", False, None)]
    assert step(review.decide, "big", True, "dr-wang", LATER).state == "approved"
    assert queue() == [] and problems() == []


def test_an_approval_under_the_threshold_rests_on_one_reviewer(sqlite_stack):
    enrol(membership(30, 0))
    waiting("small", "C0015")  # 45 years old: 100,000 yuan
    assert step(review.decide, "small", True, "dr-li", LATER).state == "approved"
    assert problems() == []


def test_reviewers_who_disagree_send_the_claim_back_to_the_queue_escalated(sqlite_stack):
    enrol(membership(30, 0))
    waiting("split", "C0005")
    step(review.decide, "split", False, "dr-li", LATER)  # a rejection: four eyes
    back = step(review.decide, "split", True, "dr-wang", LATER)
    assert back.state == "needs_review"
    assert queue() == [("split", "first", True, None)]
    # dr-li may look again at a claim back in the queue; a third reviewer confirms.
    step(review.decide, "split", False, "dr-zhao", LATER)
    final = step(review.decide, "split", False, "dr-li", LATER)
    assert (final.state, final.reason_code) == ("rejected", "criteria_not_met")
    assert problems() == []


def test_the_audit_fails_on_a_decision_that_rested_on_one_person(sqlite_stack):
    enrol(membership(30, 0))
    waiting("alone", "C0005")
    waiting("same", "C0006")
    step(claim_service.decide, "alone", False, "dr-li", LATER)  # past the queue, as a bug would
    step(review.decide, "same", False, "dr-li", LATER)
    with transaction(engine()) as session:  # the second decision by the first reviewer
        claim_service.decide(session, "same", False, "dr-li", LATER)
    found = problems()
    assert "claim alone: rejected by reviewer:dr-li alone, without a second reviewer" in found
    assert "claim same: reviewer:dr-li gave both decisions (four eyes)" in found


def test_the_beat_task_escalates_an_overdue_claim_on_the_fleet(postgres_stack):
    enrol(membership(30, 0))
    claim_id = waiting("overdue", "C0005")
    workers = run_worker(postgres_stack, concurrency=1)
    next(workers)
    try:
        send_step("escalate_reviews", (NOW_UTC + timedelta(hours=49)).isoformat())

        def escalated():
            with transaction(engine()) as session:
                return session.get(ReviewTask, claim_id).escalated_at

        wait_until(escalated, 60, "the claim escalated")
    finally:
        workers.close()
    with transaction(engine()) as session:
        notes = session.exec(select(ClaimEvent.reason).where(ClaimEvent.claim_id == claim_id))
        assert any(n and n.startswith("escalated") for n in notes)
        assert session.get(Claim, claim_id).state == "needs_review"


SEED = b"a test's seed"


def drawn_and_not() -> tuple[str, str]:
    """A submission id the seed draws for a second look, and one it does not."""
    rules = get_plan(CRITICAL)
    ids = [f"s-{n}" for n in range(200)]
    picked = [i for i in ids if sampling_reason(sample_draw(SEED, CRITICAL, i), 0, rules)]
    return picked[0], next(i for i in ids if i not in picked)


def reviewed_with_the_sample(sid: str, ref: str) -> Claim:
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(session, submission(sid, ref, "C73"), NOW_UTC)
    with transaction(engine()) as session:
        claim_service.accept(session, claim_id, NOW_UTC)
    with transaction(engine()) as session:
        request = claim_service.evidence_request(session, claim_id)
        found = Evidence(Reply.FOUND, diagnosis=[Condition("C73", request.diagnosed_on, "active")])
        return claim_service.review_claim(session, claim_id, NOW_UTC, found, SEED)


def test_the_sample_draws_the_same_approvals_for_a_second_look_and_counts_the_overturned(
    sqlite_stack,
):
    enrol(membership(30, 0))
    drawn, passed = drawn_and_not()
    assert reviewed_with_the_sample(drawn, "C0015").state == "needs_review"
    assert reviewed_with_the_sample(passed, "C0016").state == "approved"
    with transaction(engine()) as session:
        reasons = session.exec(select(ClaimEvent.reason).where(ClaimEvent.actor == "rules"))
        assert any(r and r.startswith("approved by the rules; sampled: draw") for r in reasons)
        assert review.sample_figures(session).sampled == 1
    for reviewer in ("dr-li", "dr-wang"):  # a person overturns it: a rejection, four eyes
        step(review.decide, drawn, False, reviewer, LATER)
    with transaction(engine()) as session:
        figures = review.sample_figures(session)
    assert (figures.sampled, figures.overturned, figures.overturn_rate) == (1, 1, 1.0)
    waiting("queued", "C0005")
    with serving() as api:
        metrics = api.get("/metrics").text
    assert 'huzhu_review_queue_claims{plan="critical-illness",stage="first"} 1.0' in metrics
    assert 'huzhu_review_decisions{reviewer="dr-li"} 1.0' in metrics
    assert 'huzhu_review_sampled_claims{outcome="overturned"} 1.0' in metrics
    assert "huzhu_review_sample_overturn_ratio 1.0" in metrics


def test_a_flag_sends_an_approval_to_a_person_never_a_rejection_and_the_decision_clears_it(
    sqlite_stack,
):
    # Joined 110 days ago: diagnosed 10 days ago, 10 days after the waiting period ended.
    enrol([member("EARLY", CRITICAL, 45, joined_days_ago=110), member("PLAIN", CRITICAL, 45)])
    early = claim_through_rules(submission("early", "EARLY", "C73"))
    claim_through_rules(submission("plain", "PLAIN", "C73"))
    assert (state("early"), state("plain")) == ("investigating", "scheduled")
    with transaction(engine()) as session:
        [flag] = flag_service.of_claim(session, early)
        assert (flag.rule, flag.outcome) == ("early", None)
        said = session.exec(select(ClaimEvent.reason).where(ClaimEvent.claim_id == early))
        assert any(
            r and r.startswith(claim_service.FLAGGED + "early: diagnosed 10 days") for r in said
        )
    investigated(early, Finding.SUPPORTS)
    assert step(review.decide, "early", True, "dr-li", LATER).state == "approved"  # 100,000
    with transaction(engine()) as session:
        [flag] = flag_service.of_claim(session, early)
    assert (flag.outcome, flag.settled_by) == ("cleared", "dr-li")


def test_several_claims_in_one_family_flag_the_next_and_a_rejection_confirms_it(sqlite_stack):
    enrol(
        [
            member("PAYER", CRITICAL, 45),
            member("KID1", CRITICAL, 31, payer="PAYER"),
            member("KID2", CRITICAL, 32, payer="PAYER"),
        ]
    )
    for sid, ref in (("kid-1", "KID1"), ("kid-2", "KID2")):
        claim_through_rules(submission(sid, ref, "C73"))
    payer = claim_through_rules(submission("payer", "PAYER", "C73"))
    assert state("payer") == "investigating"
    investigated(payer, Finding.CONTRADICTS, Reason.CRITERIA_NOT_MET)
    for reviewer in ("dr-li", "dr-wang"):
        step(review.decide, "payer", False, reviewer, LATER)
    with transaction(engine()) as session:
        [flag] = flag_service.of_claim(session, payer)
        assert (flag.rule, flag.outcome) == ("family", "confirmed")
    with serving() as api:
        metrics = api.get("/metrics").text
    assert 'huzhu_review_flags{outcome="confirmed",rule="family"} 1.0' in metrics
