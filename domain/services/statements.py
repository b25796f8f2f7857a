"""What a member reads of their own records: the member card, the charges per cycle and the
claims, found by their member ids and the cycles of their plans (so each lookup lands on a
key, never a scan of a cycle's millions of rows)."""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import aliased, defer
from sqlmodel import Session, col, func, or_, select

from domain.calendar import local_date
from domain.disputes import jury_request_refusal
from domain.models import Charge, Claim, CycleStatus, DebitConsent, JuryCase, Member, SharingCycle
from domain.plans import get_plan, load_plans

CHARGED = (CycleStatus.CLOSING, CycleStatus.CLOSED)


def own_rows(session: Session, member_ref: str) -> list[Member]:
    """A member's rows, one per plan (every plan named, so the (plan, member_ref) key is used)."""
    return list(
        session.exec(
            select(Member)
            .where(col(Member.plan).in_(list(load_plans())), Member.member_ref == member_ref)
            .order_by(col(Member.id))
        ).all()
    )


def family_rows(session: Session, member_ref: str) -> list[Member]:
    """The member's rows and those of everyone they pay for."""
    own = own_rows(session, member_ref)
    ids = [m.id for m in own]
    dependants = session.exec(
        select(Member).where(col(Member.payer_id).in_(ids)).order_by(col(Member.id))
    ).all()
    return own + list(dependants)


@dataclass(frozen=True)
class Membership:
    member: Member
    payer_ref: str | None
    waiting_ends_on: date
    days_a_member: int
    consent: DebitConsent | None


@dataclass(frozen=True)
class Card:
    memberships: list[Membership]
    dependants: list[Membership]
    members_helped: int  # the cases of every cycle this member (and family) shared in
    total_shared_fen: int  # what was collected from them
    archived_cycles: int  # cycles whose charges are archived and not counted here


def card(session: Session, member_ref: str, today: date) -> Card:
    rows = family_rows(session, member_ref)
    own = [m for m in rows if m.member_ref == member_ref]
    ids = [m.id for m in rows]
    cycles = charged_cycles(session, {m.plan for m in rows})
    live = [c.id for c in cycles if c.charges_archived_at is None]
    shared = session.exec(
        select(func.coalesce(func.sum(Charge.collected_fen), 0)).where(
            col(Charge.cycle_id).in_(live), col(Charge.member_id).in_(ids)
        )
    ).one()
    cases = session.exec(
        select(func.coalesce(func.sum(SharingCycle.cases), 0)).where(
            col(SharingCycle.id).in_(
                select(Charge.cycle_id)
                .where(col(Charge.cycle_id).in_(live), col(Charge.member_id).in_(ids))
                .distinct()
            )
        )
    ).one()
    views = [card_row(session, m, today) for m in rows]
    return Card(
        memberships=[v for v, m in zip(views, rows, strict=True) if m in own],
        dependants=[v for v, m in zip(views, rows, strict=True) if m not in own],
        members_helped=int(cases),
        total_shared_fen=int(shared),
        archived_cycles=len(cycles) - len(live),
    )


def card_row(session: Session, member: Member, today: date) -> Membership:
    payer = session.get(Member, member.payer_id) if member.payer_id else None
    last_day = local_date(member.exited_at) if member.exited_at else today
    return Membership(
        member=member,
        payer_ref=payer.member_ref if payer else None,
        waiting_ends_on=get_plan(member.plan).waiting_period_ends(member.joined_at),
        days_a_member=max(0, (last_day - local_date(member.joined_at)).days),
        consent=session.get(DebitConsent, member.id),
    )


def charged_cycles(session: Session, plans: set[str], before: int | None = None):
    """The plans' cycles that have charges, newest first: naming them lets a look-up by member
    land on each partition's (cycle_id, member_id) key."""
    query = select(SharingCycle).where(
        col(SharingCycle.plan).in_(plans), col(SharingCycle.status).in_(CHARGED)
    )
    if before is not None:
        query = query.where(SharingCycle.id < before)
    return list(session.exec(query.order_by(col(SharingCycle.id).desc())).all())


@dataclass(frozen=True)
class ChargeLine:
    cycle: SharingCycle
    member_ref: str
    paid_by: str
    charge: Charge


@dataclass(frozen=True)
class ChargesPage:
    lines: list[ChargeLine]
    next_before: int | None  # the cursor of the next (older) page
    archived_cycles: list[int]


def charges(
    session: Session, member_ref: str, before: int | None, cycles_per_page: int
) -> ChargesPage:
    """The charges of the member and their family, newest cycle first, a page of cycles at a
    time (cursor: the oldest cycle id of the page)."""
    rows = family_rows(session, member_ref)
    by_id = {m.id: m for m in rows}
    found = charged_cycles(session, {m.plan for m in rows}, before)
    page, more = found[:cycles_per_page], len(found) > cycles_per_page
    archived = [c.id for c in page if c.charges_archived_at is not None]
    by_cycle = {c.id: c for c in page}
    payer = aliased(Member)
    lines = session.exec(
        select(Charge, payer.member_ref)
        .join(payer, col(payer.id) == Charge.account_id)
        .where(
            col(Charge.cycle_id).in_([c.id for c in page if c.id not in archived]),
            col(Charge.member_id).in_(list(by_id)),
        )
        .order_by(col(Charge.cycle_id).desc(), col(Charge.member_id))
    ).all()
    return ChargesPage(
        lines=[
            ChargeLine(by_cycle[c.cycle_id], by_id[c.member_id].member_ref, paid_by, c)
            for c, paid_by in lines
        ],
        next_before=page[-1].id if more and page else None,
        archived_cycles=archived,
    )


def still_owed(session: Session, member: Member) -> tuple[int, list[SharingCycle]]:
    """What the member owes on leaving: charged and not collected (their own shares, and
    their family's, which this row's account pays, in any plan), and the published cycles not
    yet charged that they still share in."""
    cycles = charged_cycles(session, set(load_plans()))
    owed = session.exec(
        select(func.coalesce(func.sum(Charge.amount_fen - Charge.collected_fen), 0)).where(
            col(Charge.cycle_id).in_([c.id for c in cycles if c.charges_archived_at is None]),
            or_(Charge.member_id == member.id, Charge.account_id == member.id),
        )
    ).one()
    upcoming = session.exec(
        select(SharingCycle).where(
            SharingCycle.plan == member.plan,
            SharingCycle.status == CycleStatus.ANNOUNCED,
            SharingCycle.cutoff_at >= member.joined_at,
        )
    ).all()
    return int(owed), list(upcoming)


@dataclass(frozen=True)
class ClaimLine:
    claim: Claim  # without its raw text (deferred: it is the submission as sent, up to a body)
    member_ref: str  # whose claim: the member's or a dependant's
    jury: JuryCase | None  # the jury asked for it, if any (one per claim)
    may_ask_jury: bool  # whether a jury may be asked for it at the moment given


def claims(session: Session, member_ref: str, at: datetime, limit: int) -> list[ClaimLine] | None:
    """The claims of the member and of everyone they pay for, newest first (by when they came
    in), at most `limit`, each with its jury and whether one may be asked at `at`: one query
    on the claims' member-id key over the family's rows. None if `member_ref` has no
    membership at all.

    Claims that intake has not matched to a member (not yet taken in, or malformed) are not
    listed: only their text names the member, so finding them would read every such claim of
    every member. Each is still followed at its own URL, which its submission answered with.
    """
    by_id = {m.id: m for m in family_rows(session, member_ref)}
    if not by_id:
        return None
    found = session.exec(
        select(Claim, JuryCase)
        .outerjoin(JuryCase, col(JuryCase.claim_id) == Claim.id)
        .where(col(Claim.member_id).in_(list(by_id)))
        .options(defer(col(Claim.raw)))
        .order_by(col(Claim.received_at).desc(), col(Claim.id).desc())
        .limit(limit)
    ).all()
    return [
        ClaimLine(claim, by_id[claim.member_id].member_ref, jury, may_ask_jury(claim, jury, at))
        for claim, jury in found
    ]


def claim_jury(session: Session, claim: Claim, at: datetime) -> tuple[JuryCase | None, bool]:
    """One claim's jury, if one was asked, and whether one may be asked at `at`."""
    jury = session.exec(select(JuryCase).where(JuryCase.claim_id == claim.id)).first()
    return jury, may_ask_jury(claim, jury, at)


def may_ask_jury(claim: Claim, jury: JuryCase | None, at: datetime) -> bool:
    # A claim intake could not match has no plan; one of a retired plan has no rules left.
    if claim.plan not in load_plans():
        return False
    plan = get_plan(str(claim.plan))
    asked = jury.id if jury else None
    refusal = jury_request_refusal(
        claim.state, claim.reason_code, claim.decided_at, at, plan, asked
    )
    return refusal is None
