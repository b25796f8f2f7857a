"""Objections and juries in the database: file, decide, defer at the close, vote, tally."""

from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, or_, select

from domain.calendar import age_on
from domain.claims import Reason, State
from domain.disputes import (
    Juror,
    Objector,
    Tally,
    evidence_refusal,
    juror_refusal,
    jury_request_refusal,
    objection_refusal,
    objection_window,
)
from domain.illnesses import load_catalog
from domain.investigations import Finding, against_findings, decider_refusal
from domain.members import ExitReason
from domain.models import (
    Charge,
    Claim,
    DebitStatus,
    JuryCase,
    JuryVote,
    Member,
    MemberEvent,
    Objection,
    SharingCycle,
)
from domain.plans import get_plan, load_plans
from domain.services import events, investigations, winddown
from domain.services.claims import find_claim, member_facts, reject
from domain.services.events import move
from domain.services.members import published_cutoffs
from domain.services.statements import charged_cycles
from domain.services.store import (
    for_update,
    insert_ignoring_duplicates,
    load_for_update,
    lock_plan,
)


class Refused(ValueError):
    """The request breaks a rule; the message says which."""


def file_objection(
    session: Session,
    submission_id: str,
    member_ref: str,
    reason: str,
    evidence: str | None,
    at: datetime,
) -> Objection:
    # The plan's lock, shared, before the claim's: a close (which takes it alone) either sees
    # this objection or runs before it, never settles a case while it is being objected to.
    lock_plan(session, find_claim(session, submission_id).plan or "", shared=True)
    claim = find_claim(session, submission_id, lock=True)
    cycle = session.get(SharingCycle, claim.cycle_id) if claim.cycle_id else None
    objector = session.exec(
        select(Member).where(Member.plan == claim.plan, Member.member_ref == member_ref)
    ).first()
    if cycle is None or objector is None:
        problem = (
            "only members of the same plan may object" if cycle else "the case is not announced"
        )
        raise Refused(problem)
    who = Objector(
        plan=objector.plan,
        active=objector.exited_at is None or objector.exited_at > at,
        is_claimant=objector.id == claim.member_id,
        jury_approved=_jury_approved(session, claim.id),
    )
    window = objection_window(cycle.announce_on, get_plan(cycle.plan))
    if refusal := objection_refusal(
        claim.state, str(claim.plan), window, at, who
    ) or evidence_refusal(evidence):
        raise Refused(refusal)
    objection = Objection(
        claim_id=claim.id,
        member_id=objector.id,
        cycle_id=cycle.id,
        reason=reason[:2000],
        evidence=(evidence or None) and evidence[:500],
        filed_at=at,
    )
    if session.exec(
        select(Objection.id).where(
            Objection.claim_id == claim.id, Objection.member_id == objector.id
        )
    ).first():
        raise Refused("this member has already objected to this case (once per case)")
    session.add(objection)
    session.flush()
    objector_actor, what = f"member:{member_ref}", f"objection {objection.id}"
    if claim.state == State.ANNOUNCED:
        move(session, claim, State.OBJECTED, objector_actor, at, what)
    else:
        events.note(session, claim, objector_actor, at, what)
    return objection


def decide_objection(
    session: Session, objection_id: int, uphold: bool, reviewer: str, note: str, at: datetime
) -> Objection:
    """Re-review: upheld, the case leaves the cycle with a reason; dismissed, it stays."""
    found = session.get(Objection, objection_id)
    if found is None:
        raise LookupError(f"no objection {objection_id}")
    lock_plan(session, session.get(SharingCycle, found.cycle_id).plan, shared=True)  # type: ignore[union-attr]
    objection = load_for_update(session, Objection, objection_id)
    assert objection is not None
    if objection.status != "open":
        raise Refused(f"objection {objection_id} was already {objection.status}")
    claim = load_for_update(session, Claim, objection.claim_id)
    assert claim is not None
    if claim.state in (State.SETTLED, State.PAID):
        raise Refused(f"the case was already {claim.state}: an objection cannot undo it")
    if case := investigations.open_case_of(session, claim.id or 0):
        raise Refused(f"investigation {case.id} of the case is open: its findings come first")
    if _first_of_two(session, objection, claim, uphold, reviewer, at):
        return objection
    objection.status = "upheld" if uphold else "dismissed"
    objection.decided_at, objection.decided_by, objection.note = at, reviewer, note[:500]
    session.add(objection)
    actor = f"reviewer:{reviewer}"
    # One re-review decides the case: the case's other open objections are settled with it.
    close_open_objections(
        session, claim, objection.status, actor, at, f"settled with objection {objection_id}"
    )
    if uphold and claim.state in (State.OBJECTED, State.SCHEDULED, State.ANNOUNCED):
        claim.cycle_id = None
        reject(session, claim, Reason.OBJECTION_UPHELD, note or "objection upheld", actor, at)
    elif not uphold and claim.state == State.OBJECTED:
        move(session, claim, State.ANNOUNCED, actor, at, f"objection {objection_id} dismissed")
    return objection


def _first_of_two(
    session: Session, objection: Objection, claim: Claim, uphold: bool, reviewer: str, at: datetime
) -> bool:
    """A re-review against what the case's investigations found rests on two reviewers, neither
    of them its investigator: the first is recorded and waits; True while it waits."""
    cases = investigations.closed_cases(session, claim.id or 0)
    if why := decider_refusal(reviewer, (c.investigator for c in cases if c.investigator)):
        raise Refused(why)
    if not against_findings(not uphold, (Finding(c.finding) for c in cases if c.finding)):
        return False
    if objection.first_by is None:
        objection.first_by, objection.first_uphold = reviewer, uphold
        session.add(objection)
        what = "uphold" if uphold else "dismiss"
        events.note(
            session,
            claim,
            f"reviewer:{reviewer}",
            at,
            f"objection {objection.id}: first re-review: {what}, against the investigation's "
            "findings; a second reviewer decides",
        )
        return True
    if objection.first_by == reviewer:
        raise Refused(f"{reviewer} gave the first re-review; another reviewer gives the second")
    return False


def close_open_objections(
    session: Session, claim: Claim, status: str, actor: str, at: datetime, why: str
) -> int:
    """Give every open objection of the case the outcome `status`, with an event saying why."""
    still_open = session.exec(
        for_update(
            select(Objection).where(Objection.claim_id == claim.id, Objection.status == "open")
        )
    ).all()
    for other in still_open:
        other.status, other.decided_at, other.decided_by, other.note = status, at, actor, why
        session.add(other)
        events.note(session, claim, actor, at, f"objection {other.id} {status}: {why}")
    return len(still_open)


def _jury_approved(session: Session, claim_id: int) -> bool:
    return (
        session.exec(
            select(JuryCase.id).where(JuryCase.claim_id == claim_id, JuryCase.approved.is_(True))  # type: ignore[union-attr]
        ).first()
        is not None
    )


def defer_open_objections(session: Session, cycle_id: int, at: datetime) -> int:
    """At the close, a case whose objection is still open is not paid unseen: it moves to the
    next cycle (back on the list for the next announcement)."""
    claims = session.exec(
        for_update(
            select(Claim).where(
                Claim.cycle_id == cycle_id, col(Claim.id).in_(_with_open_objection())
            )
        )
    ).all()
    for claim in claims:
        claim.cycle_id = None
        move(session, claim, State.SCHEDULED, "close", at, "objection still open: next cycle")
    return len(claims)


def mark_objected(session: Session, cycle_id: int, at: datetime) -> None:
    """At publication, a case carried over with its objection still open is shown as objected
    (and so is deferred again at the close until a reviewer decides)."""
    claims = session.exec(
        for_update(
            select(Claim).where(
                Claim.cycle_id == cycle_id,
                Claim.state == State.ANNOUNCED,
                col(Claim.id).in_(_with_open_objection()),
            )
        )
    ).all()
    for claim in claims:
        move(session, claim, State.OBJECTED, "publish", at, "an objection is still open")


def _with_open_objection():
    return select(Objection.claim_id).where(Objection.status == "open")


def request_jury(session: Session, submission_id: str, at: datetime) -> JuryCase:
    claim = find_claim(session, submission_id, lock=True)
    plan = get_plan(str(claim.plan))
    asked = session.exec(select(JuryCase.id).where(JuryCase.claim_id == claim.id)).first()
    if refusal := jury_request_refusal(
        claim.state, claim.reason_code, claim.decided_at, at, plan, asked
    ):
        raise Refused(refusal)
    case = JuryCase(
        claim_id=claim.id,
        requested_at=at,
        closes_at=at + timedelta(hours=plan.jury_hours),
        min_votes=plan.jury_min_votes,
    )
    session.add(case)
    session.flush()
    events.note(
        session, claim, "applicant", at, f"jury {case.id} asked; votes until {case.closes_at}"
    )
    return case


def cast_vote(session: Session, case_id: int, member_ref: str, support: bool, at: datetime) -> bool:
    """Record a juror's vote; False when they had voted already (the first vote stands)."""
    # Locked, so that a vote cannot slip in while the count runs and be reported as counted.
    case = load_for_update(session, JuryCase, case_id)
    if case is None:
        raise LookupError(f"no jury case {case_id}")
    if case.status != "open" or at >= case.closes_at:
        raise Refused(f"jury case {case_id} closed at {case.closes_at.isoformat()}")
    claim = session.get(Claim, case.claim_id)
    applicant = session.get(Member, claim.member_id) if claim else None
    assert claim is not None and applicant is not None
    juror = session.exec(
        select(Member).where(Member.plan == claim.plan, Member.member_ref == member_ref)
    ).first()
    if juror is None:
        raise Refused("jurors must be members of the plan")
    facts = Juror(
        member_ref=juror.member_ref,
        birth_date=juror.birth_date,
        joined_at=juror.joined_at,
        active=juror.exited_at is None or juror.exited_at > at,
        certified=juror.jury_certified,
        unpaid_charges=_unpaid(session, juror),
    )
    if refusal := juror_refusal(facts, household(session, applicant.member_ref), at):
        raise Refused(refusal)
    counted = session.connection().execute(
        insert_ignoring_duplicates(session, JuryVote)
        .values(case_id=case_id, member_id=juror.id, support=support, cast_at=at)
        .returning(JuryVote.member_id)
    )
    return counted.first() is not None


def household(session: Session, member_ref: str) -> frozenset[str]:
    """The member_refs linked to the member by who pays for whom, in any plan and at any
    depth: their payer and the payer's, everyone any of them pays for, and the member."""
    plans = list(load_plans())
    refs: set[str] = set()
    new = {member_ref}
    while new:  # a round per generation; it ends, as there are only so many members
        refs |= new
        rows = session.exec(
            select(Member.id, Member.payer_id).where(
                col(Member.plan).in_(plans), col(Member.member_ref).in_(new)
            )
        ).all()
        ids = {i for i, _ in rows} | {payer for _, payer in rows if payer is not None}
        linked = session.exec(
            select(Member.member_ref).where(
                or_(col(Member.id).in_(ids), col(Member.payer_id).in_(ids))
            )
        ).all()
        new = set(linked) - refs
    return frozenset(refs)


def _unpaid(session: Session, juror: Member) -> int:
    """The juror's failed debits, looked up in each charged cycle of their plan by its key
    (by member id alone, every partition of millions of rows would be read)."""
    cycles = [c.id for c in charged_cycles(session, {juror.plan})]
    return session.exec(
        select(func.count()).where(
            col(Charge.cycle_id).in_(cycles),
            Charge.member_id == juror.id,
            Charge.debit_status == DebitStatus.FAILED,
        )
    ).one()


def close_due_juries(session: Session, at: datetime) -> list[int]:
    """Count the votes of every jury whose window has closed; returns the approved claims."""
    due = session.exec(
        for_update(select(JuryCase).where(col(JuryCase.id).in_(due_juries(at))))
    ).all()
    approved = []
    for case in due:
        # Each case in its own savepoint: one that cannot be decided never blocks the others.
        try:
            with session.begin_nested():
                if _count_jury(session, case, at):
                    approved.append(case.claim_id)
        except IntegrityError:
            continue  # left open; the next count tries it again, the others go on
    return approved


def _count_jury(session: Session, case: JuryCase, at: datetime) -> bool:
    """Tally one jury; True when it approved the claim and the claim may go on to be paid."""
    support, oppose = _votes(session, case.id)
    tally = Tally(support, oppose, case.min_votes)
    case.support, case.oppose = support, oppose
    case.valid, case.approved = tally.valid, tally.approved
    case.status, case.closed_at = "closed", at
    session.add(case)
    claim = load_for_update(session, Claim, case.claim_id)
    assert claim is not None
    verdict = f"jury {case.id}: {support} for, {oppose} against, {tally.votes} votes" + (
        "" if tally.valid else f" (below the {case.min_votes} needed)"
    )
    if not (tally.approved and claim.state == State.REJECTED):
        events.note(session, claim, "jury", at, verdict)
        return False
    if blocked := _cannot_pay(session, claim):
        events.note(session, claim, "jury", at, f"{verdict}; approved but {blocked}")
        return False
    # The verdict is final for the case: no objection from before it stands against it, and a
    # membership the rejection ended for non-disclosure is given back.
    close_open_objections(session, claim, "dismissed", "jury", at, f"jury {case.id} approved")
    _restore_membership(session, claim, case, at)
    claim.reason_code, claim.reason_detail, claim.decided_at = None, verdict, at
    move(session, claim, State.APPROVED, "jury", at, verdict)
    return True


def _restore_membership(session: Session, claim: Claim, case: JuryCase, at: datetime) -> None:
    if claim.reason_code != Reason.UNDISCLOSED_CONDITION:
        return
    member = load_for_update(session, Member, claim.member_id)
    assert member is not None
    if member.exit_reason != ExitReason.UNDISCLOSED_CONDITION or member.exited_at is None:
        return
    overturned = f"jury {case.id} overturned the undisclosed-condition rejection"
    cutoff = published_cutoffs(session).get(member.plan)
    if cutoff is not None and cutoff >= member.exited_at:
        # A cycle was shared without them since the exit: a membership is one unbroken span,
        # and giving it back would rewrite who shared in that cycle. It stays ended, said so.
        event = MemberEvent(
            member_id=member.id,
            at=at,
            kind="not-restored",
            reason=f"{overturned}; cycles were shared since the exit: a person decides",
        )
    else:
        # Given back as an unbroken span, which ends with the plan if the plan has ended.
        member.exited_at, member.exit_reason = winddown.ended_membership(session, member.plan, at)
        session.add(member)
        event = MemberEvent(member_id=member.id, at=at, kind="restored", reason=overturned)
    session.add(event)


def _cannot_pay(session: Session, claim: Claim) -> str | None:
    """Why an approved jury verdict still cannot pay: one payout per member, and an amount
    the plan's age bands give."""
    member = load_for_update(session, Member, claim.member_id)
    assert member is not None and claim.diagnosed_on and claim.plan
    facts = member_facts(session, member, claim)
    if facts.already_paid or facts.other_live_claim:
        return "the member has another claim approved or paid (one payout per member)"
    illness = load_catalog().by_code(claim.illness_code) if claim.illness_code else None
    amount = (
        get_plan(claim.plan).amount_for(
            age_on(member.birth_date, claim.diagnosed_on), illness.severity
        )
        if illness
        else None
    )
    if amount is None:
        return "the plan has no amount for this illness at this age"
    claim.amount_fen = amount
    return None


def _votes(session: Session, case_id: int) -> tuple[int, int]:
    support, total = session.exec(
        select(
            func.count().filter(JuryVote.support.is_(True)),  # type: ignore[attr-defined]
            func.count(),
        ).where(JuryVote.case_id == case_id)
    ).one()
    return support, total - support


def due_juries(at: datetime):
    """Open juries whose window has closed by `at` (a query, for waiting on the count)."""
    return select(JuryCase.id).where(JuryCase.status == "open", col(JuryCase.closes_at) <= at)


def jury_cases(session: Session, case_id: int | None = None) -> list[tuple[JuryCase, str]]:
    query = select(JuryCase, Claim.submission_id).join(Claim, col(Claim.id) == JuryCase.claim_id)
    if case_id is not None:
        query = query.where(JuryCase.id == case_id)
    return list(session.exec(query.order_by(col(JuryCase.id))).all())


def objections_of(session: Session, member_ids: list[int]) -> list[tuple[Objection, str]]:
    """The objections these members filed, newest first, with each case's submission id."""
    return list(
        session.exec(
            select(Objection, Claim.submission_id)
            .join(Claim, col(Claim.id) == Objection.claim_id)
            .where(col(Objection.member_id).in_(member_ids))
            .order_by(col(Objection.id).desc())
        ).all()
    )


def open_juries(session: Session, plans: set[str], at: datetime) -> list[tuple[JuryCase, Claim]]:
    """Juries still voting in these plans, soonest to close first."""
    return list(
        session.exec(
            select(JuryCase, Claim)
            .join(Claim, col(Claim.id) == JuryCase.claim_id)
            .where(
                JuryCase.status == "open",
                col(JuryCase.closes_at) > at,
                col(Claim.plan).in_(plans),
            )
            .order_by(col(JuryCase.closes_at))
        ).all()
    )


def certify(session: Session, members: list[Member], right: int, passed: bool, at: datetime) -> int:
    """Record a juror exam's result on each of the member's active rows; certify them if they
    passed. Returns how many rows are certified now."""
    active = [m for m in members if m.exited_at is None or m.exited_at > at]
    for member in active:
        if passed:
            member.jury_certified = True
            session.add(member)
        assert member.id is not None
        outcome = "passed" if passed else "not passed"
        session.add(
            MemberEvent(
                member_id=member.id,
                at=at,
                kind="juror-exam",
                reason=f"juror exam {outcome} with {right} right",
            )
        )
    return sum(m.jury_certified for m in active)


def open_objections(session: Session, limit: int) -> list[tuple[Objection, str]]:
    """Objections waiting for a re-review, oldest first, with each case's submission id."""
    return list(
        session.exec(
            select(Objection, Claim.submission_id)
            .join(Claim, col(Claim.id) == Objection.claim_id)
            .where(Objection.status == "open")
            .order_by(col(Objection.id))
            .limit(limit)
        ).all()
    )
