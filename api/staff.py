"""Staff with the `reviewer` role: the review queue (claims waiting for a person, with their
deadlines; take, hand back, decide, four eyes on rejections and large approvals) and the
objections waiting for a re-review (the same as `huzhu review` and `huzhu objections decide`).
Reviewers see the case's medical facts; members never do."""

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from api import clock
from api.access import with_role
from api.auth import Caller
from api.disputes import ObjectionView, objection_view
from api.problems import MAX_ID, Problem, SubmissionRef, not_found
from broker.database import engine
from broker.submit import send_step
from domain.claims import Reason, State
from domain.db import transaction
from domain.models import Claim
from domain.plans import PlanCode
from domain.services import claims as claim_service
from domain.services import disputes, review

router = APIRouter(prefix="/v1/review", tags=["staff"])
Reviewer = Annotated[Caller, Depends(with_role("reviewer"))]


class WaitingClaim(BaseModel):
    claim_id: int
    submission_id: str
    plan: str | None
    state: str = Field(description="needs_review, or awaiting_second_review (four eyes).")
    icd10: str | None
    illness_code: str | None
    diagnosed_on: date | None
    hospital: str | None
    amount_fen: int | None
    received_at: datetime
    why: str | None
    stage: str = Field(description="first or second review.")
    due_at: datetime
    escalate_at: datetime
    escalated: bool
    overdue: bool
    assigned_to: str | None
    first_reviewer: str | None
    first_decision: str | None = Field(description="approve, or reject: its reason code.")
    findings: str | None = Field(
        default=None,
        description="What the claim's investigation found (supports, contradicts, "
        "inconclusive); a decision against it needs a second reviewer.",
    )


def waiting_view(
    waiting: review.Waiting, now: datetime, findings: str | None = None
) -> WaitingClaim:
    task, claim = waiting.task, waiting.claim
    first = None
    if task.first_approve is not None:
        first = "approve" if task.first_approve else f"reject: {task.first_reason}"
    return WaitingClaim(
        claim_id=claim.id or 0,
        submission_id=claim.submission_id,
        plan=claim.plan,
        state=claim.state,
        icd10=claim.icd10,
        illness_code=claim.illness_code,
        diagnosed_on=claim.diagnosed_on,
        hospital=claim.hospital,
        amount_fen=claim.amount_fen,
        received_at=claim.received_at,
        why=claim.reason_detail,
        stage=task.stage,
        due_at=task.due_at,
        escalate_at=task.escalate_at,
        escalated=task.escalated_at is not None,
        overdue=waiting.overdue(now),
        assigned_to=task.assigned_to,
        first_reviewer=task.first_reviewer,
        first_decision=first,
        findings=findings,
    )


class ClaimDecision(BaseModel):
    approve: bool
    reason: Reason = Field(
        default=Reason.CRITERIA_NOT_MET, description="The coded reason of a rejection."
    )
    note: Annotated[str, Field(max_length=500)] = ""


class Decided(BaseModel):
    submission_id: str
    state: str
    reason_code: str | None


class ObjectionDecision(BaseModel):
    uphold: bool
    note: Annotated[str, Field(max_length=500)] = ""


@router.get("/claims")
def waiting_claims(
    _: Reviewer,
    plan: Annotated[PlanCode | None, Query(description="One plan's queue.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[WaitingClaim]:
    """The review queue: claims waiting for a person, escalated first, then by due time."""
    with transaction(engine()) as session:
        now = clock.now()
        return [
            waiting_view(w, now, review.findings_of(session, w.task.claim_id))
            for w in review.queue(session, plan, limit)
        ]


def _step(submission_id: str, work) -> Decided:
    """One step of the queue in a transaction; a refusal is 409, an unknown claim 404; an
    approval made final goes on to the next announcement."""
    try:
        with transaction(engine()) as session:
            claim = work(session)
    except claim_service.ClaimNotFound:
        raise not_found(f"claim {submission_id}") from None
    except ValueError as error:  # review.Refused, or the claim cannot be approved
        raise Problem(409, "review-refused", "The review step is refused", str(error)) from None
    if claim.state == State.APPROVED:
        send_step("announce_claim", claim.id)
    return Decided(submission_id=submission_id, state=claim.state, reason_code=claim.reason_code)


@router.post("/claims/{submission_id}/take")
def take_claim(submission_id: SubmissionRef, who: Reviewer) -> Decided:
    """Take the claim: it is the caller's until they decide it or hand it back."""
    return _step(
        submission_id, lambda s: review.take(s, submission_id, who.member_ref, clock.now())
    )


@router.post("/claims/{submission_id}/release")
def release_claim(submission_id: SubmissionRef, who: Reviewer) -> Decided:
    """Hand the claim back to the queue."""
    return _step(
        submission_id, lambda s: review.release(s, submission_id, who.member_ref, clock.now())
    )


@router.post("/claims/{submission_id}/decision")
def decide_claim(submission_id: SubmissionRef, body: ClaimDecision, who: Reviewer) -> Decided:
    """Approve or reject with a coded reason. A rejection, or an approval of the plan's
    threshold or more, then waits for a second reviewer (awaiting_second_review); the same
    decision from them makes it final, a different one sends it back to the queue."""
    return _step(
        submission_id,
        lambda s: review.decide(
            s, submission_id, body.approve, who.member_ref, clock.now(), body.reason, body.note
        ),
    )


@router.get("/objections")
def waiting_objections(
    _: Reviewer, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[ObjectionView]:
    """Objections waiting for a re-review, oldest first."""
    with transaction(engine()) as session:
        return [objection_view(o, ref) for o, ref in disputes.open_objections(session, limit)]


@router.post("/objections/{objection_id}/decision")
def decide_objection(
    objection_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: ObjectionDecision, who: Reviewer
) -> ObjectionView:
    """Upheld, the case leaves the cycle with a reason; dismissed, it stays."""
    try:
        with transaction(engine()) as session:
            decided = disputes.decide_objection(
                session, objection_id, body.uphold, who.member_ref, body.note, clock.now()
            )
            claim = session.get(Claim, decided.claim_id)
            assert claim is not None
            return objection_view(decided, claim.submission_id)
    except LookupError:
        raise not_found(f"objection {objection_id}") from None
    except disputes.Refused as error:
        title = "The objection cannot be decided"
        raise Problem(409, "already-decided", title, str(error)) from None
