"""A plan's wind-down in the database: scheduled once, moved through its stages by the clock
(`advance`, from the beat and the CLI), and consulted by joining, charging and review."""

from datetime import datetime

from sqlalchemy import literal, update
from sqlmodel import Session, col, func, insert, or_, select

from domain import winddown
from domain.calendar import SHANGHAI
from domain.claims import State
from domain.members import ExitReason
from domain.models import (
    Claim,
    CycleStatus,
    Member,
    MemberEvent,
    Payout,
    PayoutStatus,
    PlanEvent,
    PlanWindDown,
    SharingCycle,
    UTCDateTime,
)
from domain.plans import get_plan
from domain.services.payments import refund_all_shares
from domain.services.store import load_for_update, lock_plan
from domain.winddown import HAS_ENDED, Stage

FINAL = (State.REJECTED, State.PAID)


class Refused(ValueError):
    """A wind-down that cannot be scheduled as asked; the message says why."""


def of_plan(session: Session, plan: str) -> winddown.WindDown | None:
    row = session.get(PlanWindDown, plan)
    return _rules(row) if row is not None else None


def _rules(row: PlanWindDown) -> winddown.WindDown:
    tail_days = get_plan(row.plan).tail_days
    return winddown.WindDown(
        row.plan, row.announce_at, row.end_at, tail_days, row.refund_all_shares
    )


def schedule(
    session: Session,
    plan: str,
    announce_at: datetime,
    end_at: datetime,
    refund_all_shares: bool,
    by: str,
    now: datetime,
) -> PlanWindDown:
    """Record the plan's wind-down (once: the same again is answered with the one stored) and
    bring it to the stage the clock has reached."""
    get_plan(plan)
    lock_plan(session, plan, shared=False)
    stored = session.get(PlanWindDown, plan)
    if stored is not None:
        # Asked again (a CLI run repeated, a request retried): the one stored, whatever the day.
        if (stored.announce_at, stored.end_at, stored.refund_all_shares) != (
            announce_at,
            end_at,
            refund_all_shares,
        ):
            raise Refused(
                f"{plan} already winds down (announced {stored.announce_at.isoformat()}, "
                f"ending {stored.end_at.isoformat()}); a wind-down is not changed once announced"
            )
        return stored
    if why := winddown.schedule_refusal(announce_at, end_at, now):
        raise Refused(why)
    rules = winddown.WindDown(plan, announce_at, end_at, get_plan(plan).tail_days)
    if why := _reaches_back(session, rules):
        raise Refused(why)
    row = PlanWindDown(
        plan=plan,
        announce_at=announce_at,
        end_at=end_at,
        refund_all_shares=refund_all_shares,
        stage=Stage.ACTIVE,
        scheduled_at=now,
        scheduled_by=by,
    )
    session.add(row)
    refund = "; every share ever paid is refunded at the end" if refund_all_shares else ""
    _event(
        session,
        plan,
        now,
        "scheduled",
        f"announced {announce_at.isoformat()}, ends {end_at.isoformat()}, "
        f"the platform pays the cycles charged from {rules.sharing_stops_on}, last day covered "
        f"{rules.last_covered_day}, claims until {rules.last_tail_day} at the latest{refund}",
    )
    session.flush()
    advance(session, plan, now)
    return row


def _reaches_back(session: Session, rules: winddown.WindDown) -> str | None:
    """Why an announcement in the past cannot be: members already charged for a cycle the
    platform would pay, or members who joined after it."""
    charged = session.exec(
        select(SharingCycle.charge_on).where(
            SharingCycle.plan == rules.plan,
            col(SharingCycle.status).in_([CycleStatus.CLOSING, CycleStatus.CLOSED]),
            col(SharingCycle.charge_on) >= rules.sharing_stops_on,
        )
    ).first()
    if charged is not None:
        return (
            f"the cycle charged on {charged} has already charged its members; the platform "
            "pays from an announcement after that charge day"
        )
    joined = session.exec(
        select(Member.joined_at).where(
            Member.plan == rules.plan, Member.joined_at >= rules.announce_at
        )
    ).first()
    if joined is not None:
        return (
            f"a member joined at {joined.isoformat()}, after the announcement asked for; no one "
            "joins from it, so it must come after the last to join"
        )
    return None


def advance(session: Session, plan: str, now: datetime) -> Stage | None:
    """Move the plan's wind-down to the stage it has reached by `now`, one stage at a time, each
    with its event and its work; never back. None when the plan has no wind-down."""
    row = load_for_update(session, PlanWindDown, plan)
    if row is None:
        return None
    rules = _rules(row)
    if row.refund_all_shares and row.stage in HAS_ENDED:
        # Shares collected since the end (a late debit, arrears settled) are refunded too.
        refund_all_shares(session, plan, now)
    due = winddown.stage_due(
        rules, now, _last_cycles_closed(session, rules), all_settled(session, plan)
    )
    while winddown.ORDER.index(Stage(row.stage)) < winddown.ORDER.index(due):
        row.stage = winddown.ORDER[winddown.ORDER.index(Stage(row.stage)) + 1]
        _enter(session, row, rules, now)
    session.add(row)
    return Stage(row.stage)


def _enter(session: Session, row: PlanWindDown, rules: winddown.WindDown, now: datetime) -> None:
    if row.stage == Stage.WINDING_DOWN:
        detail = f"no one joins; the platform pays the cycles charged from {rules.sharing_stops_on}"
    elif row.stage == Stage.ENDED:
        ended = _end_memberships(session, row.plan, row.end_at)
        detail = f"{ended} memberships ended at {row.end_at.isoformat()}"
        if row.refund_all_shares:
            refunds = refund_all_shares(session, row.plan, now)
            detail += f"; {refunds} shares to refund"
    elif row.stage == Stage.TAIL:
        detail = f"the last cycles have closed; claims are taken until {rules.last_tail_day}"
    else:
        detail = "every claim is decided and every payout made"
    _event(session, row.plan, now, str(row.stage), detail)


def _end_memberships(session: Session, plan: str, end_at: datetime) -> int:
    """Every membership still open ends at the plan's end, dependants' with their payers':
    one INSERT ... SELECT of their events and one UPDATE, whatever the plan's size."""
    still_in = (Member.plan == plan, col(Member.exited_at).is_(None))
    said = select(
        Member.id, literal(end_at, UTCDateTime), literal("exited"), literal("the plan ended")
    ).where(*still_in)
    session.execute(insert(MemberEvent).from_select(["member_id", "at", "kind", "reason"], said))
    ended = (
        update(Member).where(*still_in).values(exited_at=end_at, exit_reason=ExitReason.PLAN_ENDED)
    )
    return session.execute(ended.execution_options(preserve_rowcount=True)).rowcount


def membership_end(session: Session, plan: str, exited_at: datetime | None) -> datetime | None:
    """When a membership ends: at its own exit, or at the plan's end if that comes first (also
    before the advance has stamped it)."""
    rules = of_plan(session, plan)
    if rules is None:
        return exited_at
    return rules.end_at if exited_at is None else min(exited_at, rules.end_at)


def ended_membership(
    session: Session, plan: str, at: datetime
) -> tuple[datetime | None, str | None]:
    """How a membership that goes on at `at` stands: open, or ended with the plan if the plan
    has ended by then."""
    rules = of_plan(session, plan)
    if rules is not None and at >= rules.end_at:
        return rules.end_at, ExitReason.PLAN_ENDED
    return None, None


def _last_cycles_closed(session: Session, rules: winddown.WindDown) -> bool:
    """Every cycle whose members were counted before the end has closed."""
    open_cycles = session.exec(
        select(func.count()).where(
            SharingCycle.plan == rules.plan,
            col(SharingCycle.cutoff_at) < rules.end_at,
            SharingCycle.status != CycleStatus.CLOSED,
        )
    ).one()
    return open_cycles == 0


def all_settled(session: Session, plan: str) -> bool:
    """No claim of the plan undecided or unpaid, and no payout of it unpaid: pending, or refused
    by the provider (a person must make it good before the plan is settled)."""
    return not open_obligations(session, plan)


def open_obligations(session: Session, plan: str, made_before: datetime | None = None) -> str:
    """What the plan still owes, in words ("" when nothing): claims not decided or not paid,
    payouts refused, and payouts pending (only those made before `made_before`, if given)."""
    claims = session.exec(
        select(func.count()).where(Claim.plan == plan, col(Claim.state).not_in(FINAL))
    ).one()
    unpaid = (Payout.plan == plan, Payout.status != PayoutStatus.PAID)
    if made_before is not None:
        unpaid += (or_(Payout.status == PayoutStatus.FAILED, Payout.created_at < made_before),)
    payouts = dict(
        session.exec(
            select(Payout.status, func.count()).where(*unpaid).group_by(Payout.status)
        ).all()
    )
    owed = [f"{claims} claims open"] if claims else []
    owed += [f"{n} payouts {status}" for status, n in sorted(payouts.items())]
    return ", ".join(owed)


def _event(session: Session, plan: str, at: datetime, kind: str, detail: str) -> None:
    session.add(PlanEvent(plan=plan, at=at, kind=kind, detail=detail[:500]))


def events(session: Session, plan: str) -> list[PlanEvent]:
    return list(
        session.exec(
            select(PlanEvent).where(PlanEvent.plan == plan).order_by(col(PlanEvent.id))
        ).all()
    )


def wind_downs(session: Session) -> dict[str, winddown.WindDown]:
    """Every plan's wind-down, by plan (a handful of rows)."""
    return {row.plan: _rules(row) for row in session.exec(select(PlanWindDown)).all()}


def stage_of(session: Session, plan: str) -> Stage | None:
    row = session.get(PlanWindDown, plan)
    return Stage(row.stage) if row is not None else None


def refunds_all(session: Session, plan: str) -> bool:
    row = session.get(PlanWindDown, plan)
    return row is not None and row.refund_all_shares


def platform_pays(session: Session, plan: str, charge_on) -> bool:
    rules = of_plan(session, plan)
    return rules is not None and rules.platform_pays(charge_on)


def tail_refusal(session: Session, claim: Claim) -> str | None:
    """Why a claim received after its plan ended is outside the tail, or None."""
    rules = of_plan(session, claim.plan) if claim.plan else None
    if rules is None or claim.diagnosed_on is None:
        return None
    return rules.tail_refusal(claim.diagnosed_on, claim.received_at)


def report(session: Session, plan: str) -> dict:
    """The wind-down's final report: its dates and stage, members by how they left, the cases
    paid by members and by the platform, what the platform put in, refunds, the last cycle the
    members shared. Set-based: a handful of aggregates whatever the plan's size."""
    row = session.get(PlanWindDown, plan)
    if row is None:
        raise LookupError(f"{plan} is not winding down; schedule it with `huzhu plan wind-down`")
    rules = _rules(row)
    members = {
        reason or "active": n
        for reason, n in session.exec(
            select(Member.exit_reason, func.count())
            .where(Member.plan == plan)
            .group_by(Member.exit_reason)
        ).all()
    }
    cycles = session.exec(
        select(SharingCycle)
        .where(SharingCycle.plan == plan, SharingCycle.status == CycleStatus.CLOSED)
        .order_by(col(SharingCycle.announce_on))
    ).all()
    by_members = [c for c in cycles if not rules.platform_pays(c.charge_on)]
    by_platform = [c for c in cycles if rules.platform_pays(c.charge_on)]
    refunds = dict(
        session.exec(
            select(Payout.status, func.coalesce(func.sum(Payout.amount_fen), 0))
            .where(Payout.plan == plan, Payout.purpose == "refund")
            .group_by(Payout.status)
        ).all()
    )
    last = by_members[-1] if by_members else None
    return {
        "plan": plan,
        "stage": row.stage,
        "announce_at": row.announce_at.astimezone(SHANGHAI).isoformat(),
        "end_at": row.end_at.astimezone(SHANGHAI).isoformat(),
        "members_stop_sharing_on": str(rules.sharing_stops_on),
        "last_covered_day": str(rules.last_covered_day),
        "last_tail_day": str(rules.last_tail_day),
        "refund_all_shares": row.refund_all_shares,
        "members": {str(k): int(v) for k, v in sorted(members.items())},
        "cases_paid_by_members": sum(c.cases for c in by_members),
        "aid_shared_by_members_fen": sum(c.aid_fen for c in by_members),
        "cases_paid_by_platform": sum(c.cases for c in by_platform),
        "aid_paid_by_platform_fen": sum(c.aid_fen for c in by_platform),
        "platform_share_fen": sum(c.platform_share_fen for c in cycles),
        "charged_to_members_fen": sum(c.charged_fen for c in cycles),
        "refunds_paid_fen": int(refunds.get(PayoutStatus.PAID, 0)),
        "refunds_pending_fen": int(refunds.get(PayoutStatus.PENDING, 0)),
        "refunds_failed_fen": int(refunds.get(PayoutStatus.FAILED, 0)),
        "surplus_left_fen": cycles[-1].surplus_out_fen if cycles else 0,
        "last_sharing_cycle": (
            {
                "cycle_id": last.id,
                "announce_on": str(last.announce_on),
                "charge_on": str(last.charge_on),
            }
            if last
            else None
        ),
        "claims_open": session.exec(
            select(func.count()).where(Claim.plan == plan, col(Claim.state).not_in(FINAL))
        ).one(),
        "events": [
            {"at": e.at.astimezone(SHANGHAI).isoformat(), "kind": e.kind, "detail": e.detail}
            for e in events(session, plan)
        ],
    }
