"""A claim's task in the review queue: opened when the claim comes to wait for a person, with
the plan's deadlines (domain.review), and noted in the claim's history."""

from datetime import datetime

from sqlmodel import Session

from domain import review as review_rules
from domain.claims import State
from domain.models import Claim, ReviewTask
from domain.plans import get_plan
from domain.services.events import note


def queue_for_a_person(session: Session, claim: Claim, now: datetime) -> ReviewTask:
    """Put a claim waiting for a person in the review queue, with the plan's deadlines."""
    assert claim.id is not None and claim.plan
    due = review_rules.deadlines(now, get_plan(claim.plan))
    task = ReviewTask(
        claim_id=claim.id,
        plan=claim.plan,
        stage="second" if claim.state == State.AWAITING_SECOND_REVIEW else "first",
        opened_at=now,
        escalate_at=due.escalate_at,
        due_at=due.due_at,
    )
    session.add(task)
    when = f"escalated {due.escalate_at.isoformat()}, due {due.due_at.isoformat()}"
    note(session, claim, "review", now, f"queued: {when}")
    return task
