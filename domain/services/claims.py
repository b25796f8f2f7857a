"""A claim's way through the database: record, accept, review, decide, schedule.

Each step advances a claim only from the state it expects, so running it twice changes nothing.
"""

import hashlib
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, func, select

from domain import review as review_rules
from domain.calendar import local_date
from domain.claims import (
    CONTROL_CHARACTERS,
    PAYABLE,
    UNDECIDED,
    WITH_A_PERSON,
    WORKING,
    MemberFacts,
    Reason,
    State,
    load_json,
    parse_submission,
    review,
)
from domain.illnesses import load_catalog
from domain.members import ExitReason
from domain.models import Claim, ClaimEvent, Member
from domain.plans import get_plan
from domain.records import Evidence
from domain.services import flags, investigations, winddown
from domain.services.events import move
from domain.services.members import exit_moment
from domain.services.payments import refund_waiting_period_shares
from domain.services.review_tasks import queue_for_a_person
from domain.services.store import (
    for_update,
    load_for_update,
    prepared_insert,
)

MAX_ATTEMPTS = 5
ENDS_MEMBERSHIP = {
    Reason.INSIDE_WAITING_PERIOD: ExitReason.WAITING_PERIOD_ILLNESS,
    Reason.UNDISCLOSED_CONDITION: ExitReason.UNDISCLOSED_CONDITION,
}


class ClaimNotFound(LookupError):
    pass


# The rules' event of an approval the sample draws for a person (its reason begins so).
SAMPLED = "approved by the rules; "
FLAGGED = "approved by the rules, flagged for investigation: "


def submission_key(raw: str) -> str:
    """The submission's own id when it has a usable one, else a stable hash of the raw text.

    The hash keeps a resubmitted bad line idempotent too: same text, same claim. An id with a
    control character is not usable: a JSON escape can put a NUL in it, which PostgreSQL
    cannot store.
    """
    data, _ = load_json(raw)
    given = data.get("submission_id") if isinstance(data, dict) else None
    usable = isinstance(given, str) and not CONTROL_CHARACTERS.search(given)
    if usable and 0 < len(given.strip()) <= 128:
        return given.strip()
    return "unkeyed-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def record_submission(session: Session, raw: str, now: datetime) -> tuple[int, bool]:
    """Store a submission as a received claim; returns (claim id, whether it is new).

    A raw NUL (which no valid JSON holds, and PostgreSQL cannot store) is kept as its escape,
    so the line is stored and rejected as malformed rather than lost.
    """
    raw = raw.replace("\x00", "\\u0000")
    key = submission_key(raw)
    connection, dialect = session.connection(), session.get_bind().dialect.name
    received = {
        "submission_id": key,
        "raw": raw,
        "received_at": now,
        "updated_at": now,
        "state": State.RECEIVED,
        "attempts": 0,
    }
    new_claim = prepared_insert(dialect, Claim.__table__, tuple(received), new_only=True)
    new_id = connection.execute(new_claim, received).scalar_one_or_none()
    created = new_id is not None
    claim_id = new_id or session.exec(select(Claim.id).where(Claim.submission_id == key)).one()
    if created:
        # A plain INSERT, not an object for the session to flush: the unit of work's
        # bookkeeping costs more than the statement.
        event = {"claim_id": claim_id, "at": now, "actor": "intake", "to_state": State.RECEIVED}
        connection.execute(
            prepared_insert(dialect, ClaimEvent.__table__, tuple(event), new_only=False), event
        )
    return claim_id, created


def count_attempt(session: Session, claim_id: int, expected: State, now: datetime) -> bool:
    """Count one more delivery of the step on a claim in `expected` (redelivered by the broker,
    or sent again by the sweep); False when it should not run again.

    Committed before the work itself, so a worker killed mid-step still leaves its mark. One
    UPDATE, without loading the claim.
    """
    attempts = session.exec(
        update(Claim)
        .where(col(Claim.id) == claim_id, col(Claim.state) == expected)
        .values(attempts=col(Claim.attempts) + 1)
        .returning(col(Claim.attempts))
    ).scalar_one_or_none()
    if attempts is None:
        return True  # nothing to guard: the step will find the claim already moved on
    if attempts == MAX_ATTEMPTS + 1:
        # Said once, in the claim's history, where an operator looks.
        session.add(
            ClaimEvent(
                claim_id=claim_id,
                at=now,
                actor="guard",
                from_state=expected,
                to_state=expected,
                reason=f"the {expected} step failed {MAX_ATTEMPTS} times; needs attention",
            )
        )
    return attempts <= MAX_ATTEMPTS


def reject(
    session: Session, claim: Claim, reason: Reason, detail: str, actor: str, now: datetime
) -> None:
    claim.reason_code = reason
    claim.reason_detail = detail[:500]
    claim.decided_at = now
    move(session, claim, State.REJECTED, actor, now, f"{reason}: {detail}")
    if reason in ENDS_MEMBERSHIP:
        # Whoever decided it, these end the membership (MISSION: waiting period, non-disclosure).
        member = load_for_update(session, Member, claim.member_id)
        if member is not None and member.exited_at is None:
            member.exited_at = exit_moment(session, member.plan, now)
            member.exit_reason = ENDS_MEMBERSHIP[reason]
            session.add(member)
        # The refund follows the rejection, not how the membership ended: a member who had
        # already left (or been removed) gets their shares back all the same.
        if member is not None and reason == Reason.INSIDE_WAITING_PERIOD:
            session.flush()
            refund_waiting_period_shares(session, [member.id], now)


def accept(session: Session, claim_id: int, now: datetime) -> Claim:
    """Intake: check the submission's shape and the member; received -> under_review | rejected."""
    claim = _locked(session, claim_id)
    if claim.state != State.RECEIVED:
        return claim
    submission, problem = parse_submission(claim.raw, claim.received_at)
    if submission is None:
        reject(session, claim, Reason.MALFORMED, problem, "intake", now)
        return claim
    claim.plan = submission.plan
    claim.icd10 = submission.icd10
    claim.diagnosed_on = submission.diagnosed_on
    claim.hospital = submission.hospital
    claim.accident = submission.accident
    member_id = session.exec(
        select(Member.id).where(
            Member.plan == submission.plan, Member.member_ref == submission.member_ref
        )
    ).first()
    if member_id is None:
        reject(session, claim, Reason.UNKNOWN_MEMBER, "no such member in this plan", "intake", now)
        return claim
    claim.member_id = member_id
    move(session, claim, State.UNDER_REVIEW, "intake", now)
    return claim


def review_claim(
    session: Session,
    claim_id: int,
    now: datetime,
    evidence: Evidence,
    sample_seed: bytes | None = None,
) -> Claim:
    """Medical review by the plan's rules and the hospital's records;
    under_review -> approved | rejected | needs_review. With `sample_seed`, an approval the
    draw picks goes to a person for a second look (domain.review) instead."""
    claim = _locked(session, claim_id)
    if claim.state != State.UNDER_REVIEW:
        return claim
    # The member's row lock serialises the reviews of their claims: two claims of one member
    # can never both be found alone and both approved.
    member = load_for_update(session, Member, claim.member_id)
    assert member is not None and claim.plan and claim.icd10 and claim.diagnosed_on
    decision = review(
        claim.icd10,
        claim.diagnosed_on,
        bool(claim.accident),
        member_facts(session, member, claim),
        get_plan(claim.plan),
        load_catalog(),
        evidence,
        after_end=winddown.tail_refusal(session, claim),
    )
    claim.illness_code = decision.illness_code
    claim.amount_fen = decision.amount_fen
    if decision.state == State.REJECTED:
        assert decision.reason is not None
        reject(session, claim, decision.reason, decision.detail, "rules", now)
        return claim
    if decision.state == State.APPROVED and (
        found := flags.raised(session, claim, member, evidence)
    ):
        # A flag never rejects: the approval waits for an investigator's findings and then a
        # reviewer, who confirms or clears it.
        flags.record(session, claim, found, now)
        said = "; ".join(f"{f.rule}: {f.detail}" for f in found)
        investigations.flagged(session, claim, f"{FLAGGED}{said}", now)
        return claim
    sampled = None
    if decision.state == State.APPROVED and sample_seed is not None:
        draw = review_rules.sample_draw(sample_seed, claim.plan, claim.submission_id)
        sampled = review_rules.sampling_reason(draw, claim.amount_fen, get_plan(claim.plan))
    if sampled:
        move(session, claim, State.NEEDS_REVIEW, "rules", now, f"{SAMPLED}{sampled}")
        queue_for_a_person(session, claim, now)
        return claim
    if decision.state == State.APPROVED:
        claim.decided_at = now
    move(session, claim, decision.state, "rules", now, decision.detail or None)
    if decision.state == State.NEEDS_REVIEW:
        queue_for_a_person(session, claim, now)
    return claim


def decide(
    session: Session,
    submission_id: str,
    approve: bool,
    reviewer: str,
    now: datetime,
    reason: Reason = Reason.CRITERIA_NOT_MET,
    note: str = "",
) -> Claim:
    """A reviewer's decision on a claim waiting for a person, made final; resumes its way when
    approved. The review queue (domain.services.review) decides when a decision is final."""
    claim = find_claim(session, submission_id, lock=True)
    if claim.state not in WITH_A_PERSON:
        raise ValueError(f"claim {submission_id} is {claim.state}, not waiting for a reviewer")
    actor = f"reviewer:{reviewer}"
    if not approve:
        reject(session, claim, reason, note or "rejected by the reviewer", actor, now)
        return claim
    member = load_for_update(session, Member, claim.member_id)
    assert member is not None
    facts = member_facts(session, member, claim)
    if facts.already_paid or facts.other_live_claim:
        raise ValueError(
            f"claim {submission_id} cannot be approved: the member has another claim "
            "approved or paid in this plan (one payout per member per plan)"
        )
    claim.decided_at = now
    move(session, claim, State.APPROVED, actor, now, note or "approved by the reviewer")
    return claim


def schedule(session: Session, claim_id: int, now: datetime) -> Claim:
    """Put an approved claim on the list for the plan's next announcement."""
    claim = _locked(session, claim_id)
    if claim.state == State.APPROVED:
        move(session, claim, State.SCHEDULED, "announce", now, "waits for the next announcement")
    return claim


def find_claim(session: Session, submission_id: str, lock: bool = False) -> Claim:
    query = select(Claim).where(Claim.submission_id == submission_id)
    claim = session.exec(for_update(query) if lock else query).first()
    if claim is None:
        raise ClaimNotFound(f"no claim with submission id {submission_id!r}")
    return claim


@dataclass(frozen=True)
class ClaimView:
    claim: Claim
    events: list[ClaimEvent]


def claim_history(session: Session, submission_id: str) -> ClaimView:
    claim = find_claim(session, submission_id)
    events = session.exec(
        select(ClaimEvent).where(ClaimEvent.claim_id == claim.id).order_by(col(ClaimEvent.id))
    ).all()
    return ClaimView(claim, list(events))


def same_text(session: Session, claim_id: int, raw: str) -> bool:
    """Whether the stored claim was submitted with exactly this text."""
    stored = session.exec(select(Claim.raw).where(Claim.id == claim_id)).one()
    return stored == raw.replace("\x00", "\\u0000")


def counts_by_state(session: Session) -> dict[str, int]:
    rows = session.exec(select(Claim.state, func.count()).group_by(Claim.state)).all()
    return {state: count for state, count in rows}


def _locked(session: Session, claim_id: int) -> Claim:
    claim = load_for_update(session, Claim, claim_id)
    if claim is None:
        raise ClaimNotFound(f"no claim with id {claim_id}")
    return claim


def member_facts(session: Session, member: Member, claim: Claim) -> MemberFacts:
    """The member's dates, and what their other claims in this plan say, in one query."""
    paid = col(Claim.state).in_([State.SETTLED, State.PAID])
    # Any claim on its way to payment blocks this one; an undecided one only if it came first,
    # so that two claims in flight do not block each other.
    live = or_(
        col(Claim.state).in_(list(PAYABLE)),
        and_(col(Claim.state).in_(list(UNDECIDED)), col(Claim.id) < claim.id),
    )
    paid_claims, live_claims = session.exec(
        select(func.count().filter(paid), func.count().filter(live)).where(
            Claim.member_id == member.id, Claim.plan == claim.plan, Claim.id != claim.id
        )
    ).one()
    return MemberFacts(
        birth_date=member.birth_date,
        joined_at=member.joined_at,
        exited_at=winddown.membership_end(session, member.plan, member.exited_at),
        already_paid=paid_claims > 0,
        other_live_claim=live_claims > 0,
    )


def stuck_claims(session: Session, before: datetime, limit: int = 1000) -> list[tuple[int, str]]:
    """Claims in a working state not touched since `before`: their message may have been lost."""
    rows = session.exec(
        select(Claim.id, Claim.state)
        .where(col(Claim.state).in_(WORKING), col(Claim.updated_at) < before)
        # A claim whose step keeps failing waits for a person, not for another round.
        .where(col(Claim.attempts) <= MAX_ATTEMPTS)
        .order_by(col(Claim.id))
        .limit(limit)
    ).all()
    return [(claim_id, state) for claim_id, state in rows]


def counts_by_reason(session: Session) -> dict[str, int]:
    rows = session.exec(
        select(Claim.reason_code, func.count())
        .where(Claim.state == State.REJECTED)
        .group_by(Claim.reason_code)
    ).all()
    return {str(reason): count for reason, count in rows}


def submission_ids_in(session: Session, state: State) -> list[str]:
    return list(
        session.exec(
            select(Claim.submission_id).where(Claim.state == state).order_by(col(Claim.id))
        ).all()
    )


@dataclass(frozen=True)
class EvidenceRequest:
    """What the hospital is asked about a claim: a pseudonymous patient, a code and dates."""

    member_ref: str
    icd10: str
    diagnosed_on: date
    joined_on: date


def evidence_request(session: Session, claim_id: int) -> EvidenceRequest | None:
    """The question for the hospital, or None when the claim is not waiting for review."""
    row = session.exec(
        select(Member.member_ref, Claim.icd10, Claim.diagnosed_on, Member.joined_at)
        .join(Member, col(Member.id) == Claim.member_id)
        .where(Claim.id == claim_id, Claim.state == State.UNDER_REVIEW)
    ).first()
    if row is None:
        return None
    member_ref, icd10, diagnosed_on, joined_at = row
    assert icd10 and diagnosed_on
    return EvidenceRequest(member_ref, icd10, diagnosed_on, local_date(joined_at))
