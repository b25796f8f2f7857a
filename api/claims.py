"""Members' claims: apply under an Idempotency-Key, then follow the claim to its decision."""

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import bindparam
from sqlmodel import Session, select

from api import clock
from api.access import Member_, may_read
from api.auth import Caller
from api.problems import Problem, SubmissionRef, not_found
from api.throttle import Throttled
from broker.database import engine
from broker.submit import Submitted, submit_claim
from domain.claims import CONTROL_CHARACTERS, REASON_FOR_MEMBERS, Reason, State, load_json
from domain.db import transaction
from domain.models import Claim, JuryCase, Member
from domain.services import claims as claim_service
from domain.services import requests, review, statements

router = APIRouter(tags=["claims"])


class Accepted(BaseModel):
    submission_id: str
    status_url: str


class ClaimEvent(BaseModel):
    at: str
    to_state: str
    reason: str | None


class JuryView(BaseModel):
    jury_id: int
    status: str = Field(description="open: members are voting; closed: the votes are counted.")
    closes_at: datetime
    approved: bool | None = Field(
        description="Once closed, the verdict (true: the jury found for the claim); null before."
    )


class ClaimStatus(BaseModel):
    submission_id: str
    plan: str | None
    state: str
    reason_code: str | None
    reason: str | None
    amount_fen: int | None
    decision_due_at: datetime | None = Field(
        default=None,
        description="Waiting for a person or investigated: when a decision is due.",
    )
    history: list[ClaimEvent]
    jury: JuryView | None = Field(description="The jury asked for the claim, if any.")
    may_ask_jury: bool = Field(description="Whether POST /v1/claims/{id}/jury may ask one now.")


class MyClaim(BaseModel):
    submission_id: str
    member_ref: str = Field(description="Whose claim: the caller's or a dependant's.")
    plan: str
    state: str
    reason_code: str | None
    reason: str | None
    amount_fen: int | None
    received_at: datetime
    decided_at: datetime | None
    jury: JuryView | None = Field(description="The jury asked for the claim, if any.")
    may_ask_jury: bool = Field(description="Whether POST /v1/claims/{id}/jury may ask one now.")


def jury_view(jury: JuryCase | None) -> JuryView | None:
    if jury is None:
        return None
    return JuryView(
        jury_id=jury.id or 0, status=jury.status, closes_at=jury.closes_at, approved=jury.approved
    )


def said_to_members(event) -> str | None:
    """An event's reason as the claimant may read it: an investigation's why and findings stay
    with staff (what was flagged, what was checked), the stage it is in does not."""
    investigation = State.INVESTIGATING in (event.from_state, event.to_state)
    if investigation or event.actor.startswith("investigator:") or _about_a_case(event.reason):
        return None
    return event.reason


def _about_a_case(reason: str | None) -> bool:
    return bool(reason) and reason.startswith("investigation")  # type: ignore[union-attr]


def reason_for_members(code: str | None) -> str | None:
    return REASON_FOR_MEMBERS.get(Reason(code)) if code else None


@router.get("/v1/me/claims")
def my_claims(
    who: Member_,
    limit: Annotated[int, Query(ge=1, le=100, description="Claims, newest first.")] = 50,
) -> list[MyClaim]:
    """The claims of the caller and of the members they pay for, newest first: the state, the
    reason in plain words, the amount, and the jury (asked, or whether it may be). A claim
    intake has not matched to a member yet is followed at its own URL only."""
    with transaction(engine()) as session:
        lines = statements.claims(session, who.member_ref, clock.now(), limit)
        if lines is None:
            raise not_found(f"membership of {who.member_ref}: join with POST /v1/enrolments")
        return [
            MyClaim(
                submission_id=line.claim.submission_id,
                member_ref=line.member_ref,
                plan=str(line.claim.plan),
                state=line.claim.state,
                reason_code=line.claim.reason_code,
                reason=reason_for_members(line.claim.reason_code),
                amount_fen=line.claim.amount_fen,
                received_at=line.claim.received_at,
                decided_at=line.claim.decided_at,
                jury=jury_view(line.jury),
                may_ask_jury=line.may_ask_jury,
            )
            for line in lines
        ]


@router.get("/v1/claims/{submission_id}")
def claim(submission_id: SubmissionRef, who: Member_) -> ClaimStatus:
    """A claim's state, its reason in plain words, the amount and its history: for the
    claimant and the member who pays for them (anyone else: 404)."""
    with transaction(engine()) as session:
        try:
            view = claim_service.claim_history(session, submission_id)
        except claim_service.ClaimNotFound:
            view = None
        if view is None or not _may_follow(session, who, view.claim):
            raise not_found(f"claim {submission_id}")
        found = view.claim
        jury, may_ask = statements.claim_jury(session, found, clock.now())
        due = review.decision_due(session, found.id) if found.id else None
        return ClaimStatus(
            submission_id=found.submission_id,
            plan=found.plan,
            state=found.state,
            reason_code=found.reason_code,
            reason=reason_for_members(found.reason_code),
            amount_fen=found.amount_fen,
            decision_due_at=due,
            history=[
                ClaimEvent(at=e.at.isoformat(), to_state=e.to_state, reason=said_to_members(e))
                for e in view.events
            ],
            jury=jury_view(jury),
            may_ask_jury=may_ask,
        )


@router.post(
    "/v1/claims",
    status_code=202,
    dependencies=Throttled,
)
def submit(
    body: Annotated[dict[str, Any], Body()],
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
    who: Member_,
    response: Response,
) -> Accepted:
    """Apply for aid: stored as sent, then reviewed by the workers. The same Idempotency-Key
    with the same body answers the same (one claim); with another body, 422; while the first
    is still being handled, 409. A key is remembered for 24 hours."""
    raw = json.dumps(body, ensure_ascii=False, sort_keys=True)
    submission_id = claim_service.submission_key(raw)
    now = clock.now()

    def check_and_remember(session: Session, submitted: Submitted) -> None:
        # In the submission's transaction: a refusal leaves no claim behind.
        if not _may_claim_for(session, who, body.get("member_ref"), body.get("plan")):
            raise Problem(
                422,
                "not-your-member",
                "You may claim for yourself and the members you pay for",
                "member_ref and plan must name your own membership or a dependant's",
            )
        if not submitted.created and not claim_service.same_text(session, submitted.claim_id, raw):
            # Another application already has this id: never answer with (or for) it.
            raise Problem(
                409,
                "submission-id-taken",
                "This submission id belongs to another application",
                "send the application with a new submission_id",
            )
        requests.remember(
            session, who.member_ref, idempotency_key, raw.encode(), submission_id, now
        )

    try:
        submit_claim(raw, now, also=check_and_remember)
    except requests.KeyReused as error:
        title = "The key was used for another request"
        raise Problem(422, "idempotency-key-reused", title, str(error)) from None
    except requests.InFlight as error:
        title = "The request is still being handled"
        raise Problem(409, "request-in-flight", title, str(error), {"Retry-After": "1"}) from None
    location = f"/v1/claims/{submission_id}"
    response.headers["Location"] = location
    return Accepted(submission_id=submission_id, status_url=location)


def _may_follow(session: Session, who: Caller, claim: Claim) -> bool:
    """The claimant and their payer. A claim intake could not match to a member (malformed)
    is followed by whoever may claim for the member its text names, if that membership was
    there when the claim came in: enrolling someone later opens none of their old claims."""
    if claim.member_id is not None:
        return may_read(session, who, claim.member_id)
    sent, _ = load_json(claim.raw)
    if not isinstance(sent, dict):
        return False
    claimant = _claimant(session, who, sent.get("member_ref"), sent.get("plan"))
    return claimant is not None and claimant.joined_at <= claim.received_at


# One's own membership, by the (plan, member_ref) key: a statement built once, as the claim
# path runs it on every claim.
OWN_MEMBERSHIP = select(Member.id).where(
    Member.plan == bindparam("plan"), Member.member_ref == bindparam("ref")
)


def _may_claim_for(session: Session, who: Caller, member_ref: object, plan: object) -> bool:
    if not _names_a_membership(member_ref, plan):
        return False
    if member_ref == who.member_ref:
        # The usual case, one's own claim: one keyed look-up of an id, no row loaded.
        found = session.connection().execute(OWN_MEMBERSHIP, {"plan": plan, "ref": member_ref})
        return found.first() is not None
    return _claimant(session, who, member_ref, plan) is not None


def _names_a_membership(member_ref: object, plan: object) -> bool:
    """Both are text that can be looked up (PostgreSQL cannot even compare a NUL)."""
    return (
        isinstance(member_ref, str)
        and isinstance(plan, str)
        and not CONTROL_CHARACTERS.search(member_ref + plan)
    )


def _claimant(session: Session, who: Caller, member_ref: object, plan: object) -> Member | None:
    """The membership `member_ref` and `plan` name, if the caller may claim for it: their own
    or a dependant's."""
    if not _names_a_membership(member_ref, plan):
        return None
    claimant = session.exec(
        select(Member).where(Member.plan == plan, Member.member_ref == member_ref)
    ).first()
    return claimant if claimant is not None and may_read(session, who, claimant.id) else None
