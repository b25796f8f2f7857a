"""The review queue in the database: claims waiting for a person with their deadlines, taken,
handed back and decided by reviewers, four eyes on rejections and large approvals
(domain.review's rules). Each step is an event of the claim, with the reviewer."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from domain import review
from domain.claims import PAYABLE, WITH_A_PERSON, Reason, State
from domain.investigations import Cause, Finding, against_findings, decider_refusal
from domain.models import Claim, ClaimEvent, Investigation, ReviewTask
from domain.plans import get_plan
from domain.services import claims as claim_service
from domain.services import flags, investigations
from domain.services.events import move, note
from domain.services.review_tasks import queue_for_a_person
from domain.services.store import load_for_update

FIRST, SECOND = "first", "second"  # the task's stage, as queue_for_a_person sets it
SAMPLED = claim_service.SAMPLED  # how the rules' event names an approval drawn for a person


class Refused(ValueError):
    """A step a reviewer may not take now; the message says why."""


@dataclass(frozen=True)
class Waiting:
    task: ReviewTask
    claim: Claim

    def overdue(self, now: datetime) -> bool:
        return now >= self.task.due_at


def open_tasks(session: Session, now: datetime) -> int:
    """Give every claim waiting for a person that has no task one, with the plan's deadlines
    from `now` (right after review, and on the beat's sweep for any missed); returns how many."""
    waiting = session.exec(
        select(Claim)
        .where(col(Claim.state).in_(list(WITH_A_PERSON)))
        .where(~select(ReviewTask.claim_id).where(ReviewTask.claim_id == Claim.id).exists())
    ).all()
    for claim in waiting:
        queue_for_a_person(session, claim, now)
    return len(waiting)


def escalate_overdue(session: Session, now: datetime) -> list[str]:
    """Escalate every task past its escalation time (once each); returns their submission ids."""
    due = session.exec(
        select(ReviewTask, Claim)
        .join(Claim, col(Claim.id) == ReviewTask.claim_id)
        .where(col(ReviewTask.escalated_at).is_(None), ReviewTask.escalate_at <= now)
    ).all()
    for task, claim in due:
        task.escalated_at = now
        session.add(task)
        note(session, claim, "review", now, f"escalated: due {task.due_at.isoformat()}")
    return [claim.submission_id for _, claim in due]


def queue(session: Session, plan: str | None = None, limit: int = 50) -> list[Waiting]:
    """What waits for a person: escalated first, then by due time."""
    query = select(ReviewTask, Claim).join(Claim, col(Claim.id) == ReviewTask.claim_id)
    if plan is not None:
        query = query.where(ReviewTask.plan == plan)
    query = query.order_by(
        col(ReviewTask.escalated_at).is_(None), col(ReviewTask.due_at), col(ReviewTask.claim_id)
    )
    return [Waiting(task, claim) for task, claim in session.exec(query.limit(limit)).all()]


def task_of(session: Session, claim_id: int) -> ReviewTask | None:
    return session.get(ReviewTask, claim_id)


def _waiting(session: Session, submission_id: str) -> tuple[Claim, ReviewTask]:
    claim = claim_service.find_claim(session, submission_id, lock=True)
    if claim.state not in WITH_A_PERSON:
        raise Refused(f"claim {submission_id} is {claim.state}, not waiting for a reviewer")
    assert claim.id is not None
    task = load_for_update(session, ReviewTask, claim.id)
    if task is None:  # sent to a person a moment ago: its task is opened now
        open_tasks(session, claim.updated_at)
        task = load_for_update(session, ReviewTask, claim.id)
    assert task is not None
    return claim, task


def take(session: Session, submission_id: str, reviewer: str, now: datetime) -> Claim:
    """The reviewer takes the claim: it is theirs until they decide it or hand it back."""
    claim, task = _waiting(session, submission_id)
    _assign(session, claim, task, reviewer, now)
    return claim


def _assign(session: Session, claim: Claim, task: ReviewTask, reviewer: str, now: datetime) -> None:
    investigators = (c.investigator for c in investigations.closed_cases(session, task.claim_id))
    if why := review.take_refusal(reviewer, task.assigned_to, task.first_reviewer) or (
        decider_refusal(reviewer, (who for who in investigators if who))
    ):
        raise Refused(f"claim {claim.submission_id}: {why}")
    if task.assigned_to != reviewer:
        task.assigned_to, task.assigned_at = reviewer, now
        session.add(task)
        note(session, claim, f"reviewer:{reviewer}", now, f"taken ({task.stage} review)")


def release(session: Session, submission_id: str, reviewer: str, now: datetime) -> Claim:
    """The reviewer hands the claim back to the queue, for anyone to take."""
    claim, task = _waiting(session, submission_id)
    if task.assigned_to != reviewer:
        held = f"taken by {task.assigned_to}" if task.assigned_to else "not taken"
        raise Refused(f"claim {submission_id} is {held}; only its reviewer hands it back")
    task.assigned_to, task.assigned_at = None, None
    session.add(task)
    note(session, claim, f"reviewer:{reviewer}", now, "handed back")
    return claim


def decide(
    session: Session,
    submission_id: str,
    approve: bool,
    reviewer: str,
    now: datetime,
    reason: Reason = Reason.CRITERIA_NOT_MET,
    reviewer_note: str = "",
) -> Claim:
    """A reviewer's decision. The first on a rejection or a large approval waits for a second
    reviewer; the second, if the same, makes it final, and if not sends the claim back."""
    claim, task = _waiting(session, submission_id)
    assert claim.id is not None
    _assign(session, claim, task, reviewer, now)  # the claim and its task are locked once
    cases = investigations.closed_cases(session, claim.id)
    plan = get_plan(task.plan)
    if task.stage == FIRST and (
        review.needs_second_review(approve, claim.amount_fen, plan)
        or against_findings(approve, (Finding(c.finding) for c in cases if c.finding))
    ):
        _await_second(session, claim, task, approve, reason, reviewer_note, reviewer, now)
        return claim
    if task.stage == SECOND and approve != task.first_approve:
        _send_back(session, claim, task, approve, reviewer, now)
        return claim
    if task.stage == SECOND and not approve:
        reason = Reason(task.first_reason or reason)
        reviewer_note = reviewer_note or task.first_note or ""
    _close(session, claim)
    flags.settle(session, claim.id, confirmed=not approve, reviewer=reviewer)
    return claim_service.decide(
        session, submission_id, approve, reviewer, now, reason, reviewer_note
    )


def findings_of(session: Session, claim_id: int) -> str | None:
    """What the claim's investigations found, in order (e.g. "contradicts, inconclusive")."""
    found = [c.finding for c in investigations.closed_cases(session, claim_id) if c.finding]
    return ", ".join(found) or None


def investigate(
    session: Session, submission_id: str, why: str, reviewer: str, now: datetime
) -> Investigation:
    """A reviewer sends a claim to an investigator: one waiting for a person (it leaves the queue
    until the findings come back), or an announced one a member objected to (disputed: it stays
    announced, and the objection's re-review waits for the findings)."""
    if not why.strip():
        raise Refused("say what the investigator should find out")
    claim = claim_service.find_claim(session, submission_id, lock=True)
    if claim.state == State.OBJECTED:
        note(session, claim, f"reviewer:{reviewer}", now, f"investigation of the objection: {why}")
        return investigations.open_for(session, claim, Cause.DISPUTED, why, reviewer, now)
    claim, task = _waiting(session, submission_id)
    if task.assigned_to not in (None, reviewer):
        raise Refused(f"claim {submission_id} is taken by {task.assigned_to}")
    if task.stage == SECOND:  # its first decision must not be lost: the second comes first
        raise Refused(
            f"claim {submission_id} waits for a second reviewer; they decide it (or disagree, "
            "which sends it back to the queue) before it can be investigated"
        )
    _close(session, claim)
    move(session, claim, State.INVESTIGATING, f"reviewer:{reviewer}", now, f"investigation: {why}")
    return investigations.open_for(session, claim, Cause.REVIEWER, why, reviewer, now)


def decision_due(session: Session, claim_id: int) -> datetime | None:
    """When a person is due to decide the claim: its review task's due time, or, while it is
    investigated, the findings' due time plus the plan's time to review them."""
    if task := session.get(ReviewTask, claim_id):
        return task.due_at
    if case := investigations.open_case_of(session, claim_id):
        return review.deadlines(case.due_at, get_plan(case.plan)).due_at
    return None


def _await_second(
    session: Session,
    claim: Claim,
    task: ReviewTask,
    approve: bool,
    reason: Reason,
    reviewer_note: str,
    reviewer: str,
    now: datetime,
) -> None:
    due = review.deadlines(now, get_plan(task.plan))
    task.stage, task.first_reviewer, task.first_approve = SECOND, reviewer, approve
    task.first_reason = None if approve else str(reason)
    task.first_note = reviewer_note or None
    task.assigned_to = task.assigned_at = task.escalated_at = None
    task.opened_at, task.escalate_at, task.due_at = now, due.escalate_at, due.due_at
    session.add(task)
    what = "approve" if approve else f"reject ({reason})"
    move(
        session,
        claim,
        State.AWAITING_SECOND_REVIEW,
        f"reviewer:{reviewer}",
        now,
        f"first review: {what}{': ' + reviewer_note if reviewer_note else ''}; a second "
        "reviewer decides",
    )


def _send_back(
    session: Session, claim: Claim, task: ReviewTask, approve: bool, reviewer: str, now: datetime
) -> None:
    """Two reviewers disagree: back to the queue for a first review again, escalated, with both
    opinions in the claim's history."""
    first = "approve" if task.first_approve else f"reject ({task.first_reason})"
    task.stage, task.first_reviewer, task.first_approve = FIRST, None, None
    task.first_reason = task.first_note = None
    task.assigned_to = task.assigned_at = None
    task.escalated_at = now
    session.add(task)
    move(
        session,
        claim,
        State.NEEDS_REVIEW,
        f"reviewer:{reviewer}",
        now,
        f"second review: {'approve' if approve else 'reject'}, against the first ({first}); "
        "back to the queue, escalated",
    )


def _close(session: Session, claim: Claim) -> None:
    session.execute(delete(ReviewTask).where(col(ReviewTask.claim_id) == claim.id))


def close_decided(session: Session) -> int:
    """Tasks of claims no longer waiting for a person (decided some other way): removed."""
    done = select(Claim.id).where(col(Claim.state).not_in(list(WITH_A_PERSON)))
    gone = session.execute(
        delete(ReviewTask).where(col(ReviewTask.claim_id).in_(done.scalar_subquery()))
    )
    return gone.rowcount


@dataclass(frozen=True)
class QueueFigures:
    plan: str
    stage: str
    waiting: int
    overdue: int
    escalated: int
    oldest_opened_at: datetime | None


def queue_figures(session: Session, now: datetime) -> list[QueueFigures]:
    """The queue by plan and stage: how many wait, how many are overdue or escalated, and when
    the oldest was opened (one aggregate over the tasks)."""
    rows = session.exec(
        select(
            ReviewTask.plan,
            ReviewTask.stage,
            func.count(),
            func.count().filter(ReviewTask.due_at <= now),
            func.count().filter(col(ReviewTask.escalated_at).is_not(None)),
            func.min(ReviewTask.opened_at),
        ).group_by(ReviewTask.plan, ReviewTask.stage)
    ).all()
    return [QueueFigures(*row) for row in rows]


def decisions_by_reviewer(session: Session) -> dict[str, int]:
    """Decisions each reviewer gave (first, second or sole), from the claims' events."""
    rows = session.exec(
        select(ClaimEvent.actor, func.count())
        .where(col(ClaimEvent.from_state).in_(list(WITH_A_PERSON)))
        .where(col(ClaimEvent.to_state).in_([State.APPROVED, State.REJECTED, *WITH_A_PERSON]))
        .where(col(ClaimEvent.from_state) != col(ClaimEvent.to_state))
        .where(col(ClaimEvent.actor).like("reviewer:%"))
        .group_by(ClaimEvent.actor)
    ).all()
    return {actor.removeprefix("reviewer:"): n for actor, n in rows}


@dataclass(frozen=True)
class SampleFigures:
    sampled: int
    confirmed: int
    overturned: int

    @property
    def overturn_rate(self) -> float | None:
        decided = self.confirmed + self.overturned
        return self.overturned / decided if decided else None


def sample_figures(session: Session) -> SampleFigures:
    """The rules' approvals drawn for a second look, and how many a person confirmed (went on
    to be paid) or overturned (rejected)."""
    drawn = select(ClaimEvent.claim_id).where(
        col(ClaimEvent.reason).like(f"{SAMPLED}%"), ClaimEvent.actor == "rules"
    )
    sampled, confirmed, overturned = session.exec(
        select(
            func.count(),
            func.count().filter(col(Claim.state).in_(list(PAYABLE))),
            func.count().filter(Claim.state == State.REJECTED),
        ).where(col(Claim.id).in_(drawn.scalar_subquery()))
    ).one()
    return SampleFigures(sampled, confirmed, overturned)
