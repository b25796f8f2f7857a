"""Medical review by people, pure: when a claim waiting for a person is escalated and when it is
due, which decisions rest on two people (four eyes), and who may be the second.

A claim the rules cannot decide waits in `needs_review` with a due time and an earlier
escalation time (the plan's, in plans.toml); a reviewer takes it, decides it or hands it back.
A rejection, or an approval of at least the plan's `second_review_from_fen`, then waits in
`awaiting_second_review` for a reviewer who is not the first: the same decision makes it final,
a different one sends the claim back to `needs_review`, escalated, with both opinions kept.

A share of the approvals the rules make alone (and every one above a value threshold) is drawn
for a second look before its announcement: it waits in `needs_review` like the others.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.plans import Plan


@dataclass(frozen=True)
class Deadlines:
    escalate_at: datetime
    due_at: datetime


def deadlines(opened_at: datetime, plan: Plan) -> Deadlines:
    """A claim waiting for a person from `opened_at`: escalated, then due, by the plan's hours."""
    return Deadlines(
        opened_at + timedelta(hours=plan.review_escalate_hours),
        opened_at + timedelta(hours=plan.review_due_hours),
    )


def needs_second_review(approve: bool, amount_fen: int | None, plan: Plan) -> bool:
    """Every rejection, and every approval of the plan's threshold or more, rests on two people:
    the adverse decisions and the large ones."""
    return not approve or (amount_fen or 0) >= plan.second_review_from_fen


def take_refusal(reviewer: str, assigned_to: str | None, first_reviewer: str | None) -> str | None:
    """Why `reviewer` may not take (or decide) the claim now, or None."""
    if assigned_to is not None and assigned_to != reviewer:
        return f"taken by {assigned_to}; they decide it or hand it back first"
    if first_reviewer is not None and first_reviewer == reviewer:
        return (
            f"{reviewer} gave the first decision; a second reviewer who is not the first must "
            "give the second (four eyes)"
        )
    return None


def sample_draw(seed: bytes, plan: str, submission_id: str) -> float:
    """The claim's draw in [0, 1): the same for the same seed and claim, so a sample can be
    drawn again and checked; keyed, so that no one can choose a submission id to avoid it."""
    digest = hmac.new(seed, f"{plan}\n{submission_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sampling_reason(draw: float, amount_fen: int | None, plan: Plan) -> str | None:
    """Why an approval by the rules alone is drawn for a second look before its announcement
    (the plan's share of them, and every one above its value threshold), or None."""
    if (amount_fen or 0) > plan.sample_above_fen:
        return f"sampled: {amount_fen} fen is above {plan.sample_above_fen}"
    if draw < plan.sample_rate_bp / 10_000:
        return f"sampled: draw {draw:.6f} < {plan.sample_rate_bp / 100:g}%"
    return None
