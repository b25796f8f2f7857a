"""The next cycle's share, estimated from the cases now in the pipeline, with a range."""

from datetime import date

from sqlmodel import Session, col, func, select

from domain.calendar import next_announcement_day, start_of_day
from domain.claims import PAYABLE, State
from domain.models import Claim, CycleStatus, Member, SharingCycle
from domain.plans import get_plan
from domain.services.members import shares_at
from domain.sharing import compute_share

# Cases already announced belong to the cycle being charged now, not to the next one; an
# objected case joins the next one only if its objection is dismissed.
CERTAIN = [State.APPROVED, State.SCHEDULED]
UNCERTAIN = [
    State.RECEIVED,
    State.UNDER_REVIEW,
    State.NEEDS_REVIEW,
    State.AWAITING_SECOND_REVIEW,
    State.INVESTIGATING,
    State.OBJECTED,
]


def forecast_share(session: Session, plan_code: str, today: date) -> dict:
    plan = get_plan(plan_code)
    announce_on = next_announcement_day(today)
    members = session.exec(
        select(func.count()).where(Member.plan == plan_code, shares_at(start_of_day(today)))
    ).one()
    certain = _amounts(session, plan_code, CERTAIN)
    uncertain = _amounts(session, plan_code, UNCERTAIN)
    # A claim not yet reviewed has no amount: count it at the average approved amount.
    typical = (
        round(sum(certain) / len(certain)) if certain else max(b.amount_fen for b in plan.amounts)
    )
    uncertain = [amount or typical for amount in uncertain]
    rate = _approval_rate(session, plan_code)
    average = round(sum(uncertain) / len(uncertain)) if uncertain else 0
    likely = [average] * round(rate * len(uncertain))
    surplus = (
        session.exec(
            select(SharingCycle.surplus_out_fen)
            .where(SharingCycle.plan == plan_code, SharingCycle.status == CycleStatus.CLOSED)
            .order_by(col(SharingCycle.announce_on).desc())
        ).first()
        or 0
    )

    def share(amounts: list[int]) -> dict:
        figures = compute_share(
            amounts, members, surplus, plan.fee_rate_bp, plan.per_patient_cap_fen
        )
        return {"cases": len(amounts), "share_fen": figures.share_fen}

    return {
        "plan": plan_code,
        "announce_on": announce_on.isoformat(),
        "members": members,
        "approval_rate": round(rate, 3),
        "low": share(certain),
        "expected": share(certain + likely),
        "high": share(certain + uncertain),
    }


def _amounts(session: Session, plan_code: str, states: list[State]) -> list[int]:
    return [
        amount or 0
        for amount in session.exec(
            select(Claim.amount_fen).where(Claim.plan == plan_code, col(Claim.state).in_(states))
        ).all()
    ]


def _approval_rate(session: Session, plan_code: str) -> float:
    """Of the claims decided so far, the share that went on to be paid (0.8 with no history)."""
    paid = session.exec(
        select(func.count()).where(Claim.plan == plan_code, col(Claim.state).in_(list(PAYABLE)))
    ).one()
    rejected = session.exec(
        select(func.count()).where(Claim.plan == plan_code, Claim.state == State.REJECTED)
    ).one()
    return paid / (paid + rejected) if paid + rejected else 0.8
