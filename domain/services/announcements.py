"""The cases of a cycle as members see them: masked, with no record and no ID number."""

from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from domain.announcements import Case, public_case
from domain.calendar import SHANGHAI, local_date
from domain.claims import State
from domain.disputes import objection_window
from domain.illnesses import load_catalog
from domain.models import Charge, Claim, CycleStatus, Member, SharingCycle
from domain.plans import Plan, get_plan
from domain.services import winddown
from domain.winddown import WindDown

SHOWN = [State.ANNOUNCED, State.OBJECTED, State.SETTLED, State.PAID]


@dataclass(frozen=True)
class Announcement:
    cycle: SharingCycle
    plan: Plan
    cases: list[Case]
    objections_from: str
    objections_until: str
    # The plan's wind-down, once it is announced or this cycle is one the platform pays.
    wind_down: WindDown | None = None


def announcement(session: Session, cycle: SharingCycle) -> Announcement:
    plan = get_plan(cycle.plan)
    # Shown in Shanghai time, as members read the calendar.
    opens, closes = (t.astimezone(SHANGHAI) for t in objection_window(cycle.announce_on, plan))
    ending = winddown.of_plan(session, cycle.plan)
    told = ending is not None and (
        ending.platform_pays(cycle.charge_on)
        or (cycle.announced_at is not None and cycle.announced_at >= ending.announce_at)
    )
    return Announcement(
        cycle,
        plan,
        announced_cases(session, cycle),
        opens.isoformat(),
        closes.isoformat(),
        ending if told else None,
    )


def announced_cases(session: Session, cycle: SharingCycle) -> list[Case]:
    # What each case's member has shared so far: only their rows, found by each charged
    # cycle's key (cycle, member), never a pass over every member's charges.
    case_members = select(Claim.member_id).where(Claim.cycle_id == cycle.id)
    charged = select(SharingCycle.id).where(
        SharingCycle.plan == cycle.plan,
        col(SharingCycle.status).in_([CycleStatus.CLOSING, CycleStatus.CLOSED]),
    )
    shared = (
        select(Charge.member_id, func.sum(Charge.collected_fen).label("paid"))
        .where(col(Charge.cycle_id).in_(charged), col(Charge.member_id).in_(case_members))
        .group_by(Charge.member_id)
        .subquery()
    )
    rows = session.exec(
        select(Claim, Member, func.coalesce(shared.c.paid, 0))
        .join(Member, col(Member.id) == Claim.member_id)
        .outerjoin(shared, shared.c.member_id == Member.id)
        .where(Claim.cycle_id == cycle.id, col(Claim.state).in_(SHOWN))
        .order_by(col(Claim.id))
    ).all()
    catalog = load_catalog()
    cases = []
    for claim, member, paid in rows:
        diagnosis = catalog.find(claim.icd10 or "", cycle.plan)
        cases.append(
            public_case(
                case_ref=claim.submission_id,
                status=claim.state,
                shared_fen=int(paid),
                name=member.name,
                birth_date=member.birth_date,
                sex=member.sex,
                province=member.province,
                illness=diagnosis.name_zh if diagnosis else str(claim.illness_code),
                amount_fen=claim.amount_fen or 0,
                diagnosed_on=claim.diagnosed_on or cycle.announce_on,
                joined_on=local_date(member.joined_at),
                announce_on=cycle.announce_on,
            )
        )
    return cases


def current_cycle(session: Session, plan_code: str) -> SharingCycle | None:
    """The plan's latest published cycle: the one its 公示 shows."""
    return session.exec(
        select(SharingCycle)
        .where(SharingCycle.plan == plan_code, SharingCycle.status != CycleStatus.OPEN)
        .order_by(col(SharingCycle.announce_on).desc())
    ).first()
