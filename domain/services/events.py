"""A claim's transitions, each stored as an event: who, when, from, to and why."""

from datetime import datetime

from sqlmodel import Session

from domain.claims import State, check_transition
from domain.models import Claim, ClaimEvent


def move(
    session: Session,
    claim: Claim,
    target: State,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Advance the claim and store the transition as an event."""
    check_transition(claim.state, target)
    _event(session, claim, actor, now, target, reason)
    claim.state = target
    claim.updated_at = now
    claim.attempts = 0
    session.add(claim)


def note(session: Session, claim: Claim, actor: str, now: datetime, reason: str) -> None:
    """An event that changes no state (an objection, a jury asked for or counted)."""
    _event(session, claim, actor, now, State(claim.state), reason)


def _event(
    session: Session, claim: Claim, actor: str, now: datetime, to: State, reason: str | None
) -> None:
    session.add(
        ClaimEvent(
            claim_id=claim.id,
            at=now,
            actor=actor,
            from_state=claim.state,
            to_state=to,
            reason=reason[:500] if reason else None,
        )
    )
