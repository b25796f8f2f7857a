"""Fraud flags in the database: the counts each rule of domain.flags needs, read with a few
indexed aggregates per claim, the flags raised stored with the claim, and their outcome once a
reviewer decides (a rejection confirms them, an approval clears them)."""

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, func, or_, select

from domain import flags
from domain.calendar import local_date
from domain.models import Claim, ClaimFlag, Member
from domain.plans import get_plan
from domain.records import Evidence


def raised(session: Session, claim: Claim, member: Member, evidence: Evidence) -> list[flags.Flag]:
    """Every flag the claim raises (none rejects it)."""
    assert claim.plan and claim.diagnosed_on and claim.icd10
    found = [
        flags.early(claim.diagnosed_on, get_plan(claim.plan).waiting_period_ends(member.joined_at)),
        flags.prior(evidence.earlier, claim.icd10, local_date(member.joined_at)),
        flags.family(_family_claims(session, claim, member)),
        _hospital(session, claim),
        _wave(session, claim),
    ]
    return [flag for flag in found if flag is not None]


def record(session: Session, claim: Claim, found: list[flags.Flag], now: datetime) -> None:
    assert claim.id is not None
    for flag in found:
        session.add(ClaimFlag(claim_id=claim.id, rule=flag.rule, detail=flag.detail, raised_at=now))


def settle(session: Session, claim_id: int, confirmed: bool, reviewer: str) -> None:
    """A reviewer's final decision settles the claim's flags: confirmed by a rejection,
    cleared by an approval."""
    session.execute(
        update(ClaimFlag)
        .where(col(ClaimFlag.claim_id) == claim_id, col(ClaimFlag.outcome).is_(None))
        .values(outcome="confirmed" if confirmed else "cleared", settled_by=reviewer)
    )


def of_claim(session: Session, claim_id: int) -> list[ClaimFlag]:
    return list(session.exec(select(ClaimFlag).where(ClaimFlag.claim_id == claim_id)).all())


def figures(session: Session) -> dict[tuple[str, str], int]:
    """Flags by rule and outcome (open, confirmed, cleared)."""
    rows = session.exec(
        select(ClaimFlag.rule, ClaimFlag.outcome, func.count()).group_by(
            ClaimFlag.rule, ClaimFlag.outcome
        )
    ).all()
    return {(rule, outcome or "open"): n for rule, outcome, n in rows}


def _family_claims(session: Session, claim: Claim, member: Member) -> int:
    payer = member.payer_id or member.id
    family = select(Member.id).where(or_(Member.id == payer, Member.payer_id == payer))
    return session.exec(
        select(func.count()).where(
            col(Claim.member_id).in_(family.scalar_subquery()),
            Claim.id != claim.id,
            Claim.received_at > claim.received_at - flags.FAMILY_WINDOW,
            Claim.received_at <= claim.received_at,
        )
    ).one()


def _received(since: datetime, until: datetime):
    return (Claim.received_at >= since, Claim.received_at < until)


def _hospital(session: Session, claim: Claim) -> flags.Flag | None:
    if not claim.hospital:
        return None
    at = claim.received_at
    window = at - flags.HOSPITAL_WINDOW
    same = Claim.hospital == claim.hospital
    recent, baseline = session.exec(
        select(
            func.count().filter(Claim.received_at >= window),
            func.count().filter(Claim.received_at < window),
        ).where(same, *_received(window - flags.HOSPITAL_BASELINE, at + _INSTANT))
    ).one()
    return flags.hospital(recent, baseline)


def _wave(session: Session, claim: Claim) -> flags.Flag | None:
    if not claim.icd10:
        return None
    at = claim.received_at
    window = at - flags.WAVE_WINDOW
    category = claim.icd10[:3]
    same = (col(Claim.icd10) >= category) & (col(Claim.icd10) < category + "\uffff")
    recent = Claim.received_at >= window
    # One pass over the half-year's claims: the diagnosis's and all, recent and before.
    recent_same, baseline_same, recent_all, baseline_all = session.exec(
        select(
            func.count().filter(same & recent),
            func.count().filter(same & ~recent),
            func.count().filter(recent),
            func.count().filter(~recent),
        ).where(*_received(window - flags.WAVE_BASELINE, at + _INSTANT))
    ).one()
    return flags.wave(recent_same, recent_all, baseline_same, baseline_all)


_INSTANT = flags.timedelta(microseconds=1)  # the claim's own moment is in its window
