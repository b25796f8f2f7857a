"""Staff with the `reviewer` role: the claims waiting for a person and the objections waiting
for a re-review, and their decisions (the same as `huzhu claims decide` and `huzhu objections
decide`). Reviewers see the case's medical facts; members never do."""

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
from domain.services import claims as claim_service
from domain.services import disputes

router = APIRouter(prefix="/v1/review", tags=["staff"])
Reviewer = Annotated[Caller, Depends(with_role("reviewer"))]


class WaitingClaim(BaseModel):
    claim_id: int
    submission_id: str
    plan: str | None
    icd10: str | None
    illness_code: str | None
    diagnosed_on: date | None
    hospital: str | None
    amount_fen: int | None
    received_at: datetime
    why: str | None


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
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="The last claim_id seen.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[WaitingClaim]:
    """Claims the rules sent to a person (needs_review), oldest first."""
    with transaction(engine()) as session:
        return [
            WaitingClaim(
                claim_id=c.id or 0,
                submission_id=c.submission_id,
                plan=c.plan,
                icd10=c.icd10,
                illness_code=c.illness_code,
                diagnosed_on=c.diagnosed_on,
                hospital=c.hospital,
                amount_fen=c.amount_fen,
                received_at=c.received_at,
                why=c.reason_detail,
            )
            for c in claim_service.review_queue(session, limit, after)
        ]


@router.post("/claims/{submission_id}/decision")
def decide_claim(submission_id: SubmissionRef, body: ClaimDecision, who: Reviewer) -> Decided:
    """Approve (the claim goes on to the next announcement) or reject with a coded reason."""
    try:
        with transaction(engine()) as session:
            claim = claim_service.decide(
                session,
                submission_id,
                body.approve,
                who.member_ref,
                clock.now(),
                body.reason,
                body.note,
            )
    except claim_service.ClaimNotFound:
        raise not_found(f"claim {submission_id}") from None
    except ValueError as error:
        raise Problem(409, "not-waiting", "The claim cannot be decided", str(error)) from None
    if claim.state == State.APPROVED:
        send_step("announce_claim", claim.id)
    return Decided(submission_id=submission_id, state=claim.state, reason_code=claim.reason_code)


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
