"""The cases of a cycle as members see them: masked, with no record and no ID number."""

from sqlmodel import Session, col, select

from domain.announcements import Case, public_case
from domain.calendar import local_date
from domain.claims import State
from domain.illnesses import load_catalog
from domain.models import Claim, Member, SharingCycle

SHOWN = [State.ANNOUNCED, State.SETTLED, State.PAID]


def announced_cases(session: Session, cycle: SharingCycle) -> list[Case]:
    rows = session.exec(
        select(Claim, Member)
        .join(Member, col(Member.id) == Claim.member_id)
        .where(Claim.cycle_id == cycle.id, col(Claim.state).in_(SHOWN))
        .order_by(col(Claim.id))
    ).all()
    catalog = load_catalog()
    cases = []
    for claim, member in rows:
        diagnosis = catalog.find(claim.icd10 or "", cycle.plan)
        cases.append(
            public_case(
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
