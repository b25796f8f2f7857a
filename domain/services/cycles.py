"""Sharing cycles in the database: publish the announcement, close the cycle, charge, finalise.

Closing is split so that the fleet can share it: `begin_close` settles the cases and freezes the
figures (once, under a lock), each `charge_chunk` writes one range of members' charges together
with its own 'done' row, and `finalise` books the cycle when every chunk has recorded itself.
"""

from datetime import date, datetime

from sqlalchemy import ColumnElement, case, literal, update
from sqlmodel import Session, col, func, insert, select

from domain import accounts
from domain.calendar import (
    announcement_day_on_or_before,
    charge_day,
    local_date,
    start_of_day,
)
from domain.claims import State
from domain.members import ExitReason
from domain.models import (
    Charge,
    ChargeChunk,
    Claim,
    ClaimEvent,
    CycleStatus,
    LedgerEntry,
    Member,
    SharingCycle,
    UTCDateTime,
)
from domain.money import ceil_div
from domain.plans import get_plan
from domain.services import proofs, winddown
from domain.services.disputes import defer_open_objections, mark_objected
from domain.services.members import age_out, shares_at
from domain.services.store import (
    add_charge_partition,
    for_update,
    insert_ignoring_duplicates,
    load_for_update,
    lock_plan,
)
from domain.sharing import annual_cap_can_bind, compute_share


class NothingToClose(LookupError):
    pass


def publish(session: Session, plan_code: str, at: datetime) -> SharingCycle:
    """Publish the announcement of the cycle whose announcement day is the latest by `at`.

    Freezes the list: every case scheduled (decided) up to `at` joins it. A cycle already
    published is returned unchanged.
    """
    get_plan(plan_code)
    lock_plan(session, plan_code, shared=False)
    announce_on = announcement_day_on_or_before(local_date(at))
    cycle = _get_or_create_cycle(session, plan_code, announce_on)
    if cycle.status != CycleStatus.OPEN:
        return cycle
    # A plan past its end has ended its memberships before anyone is counted at the cut-off.
    winddown.advance(session, plan_code, at)
    age_out(session, plan_code, cycle.cutoff_at)
    listed = (
        select(Claim.id)
        .where(Claim.plan == plan_code, Claim.state == State.SCHEDULED)
        .where(col(Claim.decided_at) <= at)
    )
    _record_events(session, listed, "publish", State.SCHEDULED, State.ANNOUNCED, at)
    session.execute(
        update(Claim)
        .where(col(Claim.id).in_(listed.scalar_subquery()))
        .values(state=State.ANNOUNCED, cycle_id=cycle.id, updated_at=at)
    )
    mark_objected(session, cycle.id, at)
    # The expected figures, shown with the announcement; the close recomputes them.
    _freeze_figures(session, cycle, State.ANNOUNCED)
    cycle.status = CycleStatus.ANNOUNCED
    cycle.announced_at = at
    session.add(cycle)
    return cycle


def begin_close(session: Session, plan_code: str, at: datetime, chunk_size: int) -> SharingCycle:
    """Settle the due cycle's cases and freeze its figures: announced -> closing, exactly once.

    A cycle already closing or closed is returned as it is, so a redelivered or concurrent close
    goes on to (re)dispatch the chunks that are not done, and never computes twice.
    """
    plan = get_plan(plan_code)
    lock_plan(session, plan_code, shared=False)
    cycle = due_cycle(session, plan_code, at)
    cycle = load_for_update(session, SharingCycle, cycle.id)
    assert cycle is not None
    if cycle.status != CycleStatus.ANNOUNCED:
        return cycle
    defer_open_objections(session, cycle.id, at)
    settled = select(Claim.id).where(Claim.cycle_id == cycle.id, Claim.state == State.ANNOUNCED)
    _record_events(session, settled, "close", State.ANNOUNCED, State.SETTLED, at)
    session.execute(
        update(Claim)
        .where(col(Claim.id).in_(settled.scalar_subquery()))
        .values(state=State.SETTLED, updated_at=at)
    )
    # One payout per member per plan: the member leaves once their case is settled. They were a
    # member at the cut-off, so they still share in this cycle.
    session.execute(
        update(Member)
        .where(
            col(Member.id).in_(
                select(Claim.member_id).where(
                    Claim.cycle_id == cycle.id, Claim.state == State.SETTLED
                )
            ),
            col(Member.exited_at).is_(None),
        )
        .values(exited_at=at, exit_reason=ExitReason.PAID_OUT)
    )
    first_id, last_id = _freeze_figures(session, cycle, State.SETTLED)
    cycle.annual_cap_binds = annual_cap_can_bind(
        _plan_shares_in_year(session, plan_code, cycle.charge_on.year),
        cycle.share_fen,
        plan.annual_cap_fen,
    )
    charging = cycle.share_fen > 0 and cycle.sharing_members > 0
    cycle.first_member_id = first_id or 0
    cycle.last_member_id = last_id or 0
    cycle.chunk_size = chunk_size
    cycle.chunks = (
        ceil_div(cycle.last_member_id - cycle.first_member_id + 1, chunk_size) if charging else 0
    )
    cycle.status = CycleStatus.CLOSING
    cycle.closing_at = at
    session.add(cycle)
    return cycle


def _freeze_figures(session: Session, cycle: SharingCycle, state: State) -> tuple[int, int]:
    """Compute the cycle's figures from its cases in `state` and its members at the cut-off;
    returns the lowest and highest sharing member id (the span the chunks cover)."""
    plan = get_plan(cycle.plan)
    amounts = session.exec(
        select(Claim.amount_fen).where(Claim.cycle_id == cycle.id, Claim.state == state)
    ).all()
    first_id, last_id, members = session.exec(
        select(func.min(Member.id), func.max(Member.id), func.count()).where(
            Member.plan == cycle.plan, shares_at(cycle.cutoff_at)
        )
    ).one()
    if None in amounts:
        raise ValueError(f"cycle {cycle.id}: a {state} claim has no amount")
    figures = compute_share(
        list(amounts),
        members,
        _surplus_carried_in(session, cycle.plan, cycle.announce_on),
        plan.fee_rate_bp,
        plan.per_patient_cap_fen,
        platform_pays=winddown.platform_pays(session, cycle.plan, cycle.charge_on),
    )
    cycle.sharing_members = figures.sharing_members
    cycle.cases = figures.cases
    cycle.aid_fen = figures.aid_fen
    cycle.fee_fen = figures.fee_fen
    cycle.surplus_in_fen = figures.surplus_in_fen
    cycle.surplus_out_fen = figures.surplus_out_fen
    cycle.share_fen = figures.share_fen
    cycle.cap_subsidy_fen = figures.cap_subsidy_fen
    cycle.platform_share_fen = figures.platform_share_fen
    cycle.subsidy_fen = figures.cap_subsidy_fen + figures.platform_share_fen
    return first_id, last_id


def pending_chunks(session: Session, cycle: SharingCycle) -> list[int]:
    """The chunk numbers of a closing cycle that have not recorded themselves yet."""
    done = set(
        session.exec(select(ChargeChunk.chunk_no).where(ChargeChunk.cycle_id == cycle.id)).all()
    )
    return [n for n in range(cycle.chunks) if n not in done]


def charge_chunk(
    session: Session, cycle_id: int, chunk_no: int, now: datetime, keys: proofs.ProofKeys
) -> bool:
    """Charge one range of member ids with one INSERT ... SELECT and build its proof subtree;
    False when already done.

    The chunk's rows, its subtree and its 'done' row commit together, so a crashed chunk is
    simply run again and a finished one is skipped; the (cycle, member) key is the last guard.
    """
    cycle = session.get(SharingCycle, cycle_id)
    if cycle is None or cycle.status != CycleStatus.CLOSING or not 0 <= chunk_no < cycle.chunks:
        return False
    if session.get(ChargeChunk, (cycle_id, chunk_no)) is not None:
        return False
    low, high = proofs.chunk_span(cycle, chunk_no)
    in_chunk = (
        Member.plan == cycle.plan,
        col(Member.id).between(low, high),
        shares_at(cycle.cutoff_at),
    )
    amount, subsidy, source = _charge_columns(session, cycle, low, high)
    # The paying account (the payer's member id, or one's own) is fixed with the charge, so
    # collection batches select by an index instead of working it out per row.
    account = func.coalesce(Member.payer_id, Member.id)
    rows = source.add_columns(literal(cycle_id), Member.id, account, amount, subsidy).where(
        *in_chunk
    )
    columns = ["cycle_id", "member_id", "account_id", "amount_fen", "subsidy_fen"]
    # SQLAlchemy keeps an INSERT's rowcount only when asked to (preserve_rowcount).
    statement = insert(Charge).from_select(columns, rows)
    count = session.execute(statement.execution_options(preserve_rowcount=True)).rowcount
    if cycle.annual_cap_binds:  # amounts differ per member: add up what was written
        total, subsidies = session.exec(
            select(func.sum(Charge.amount_fen), func.sum(Charge.subsidy_fen)).where(
                Charge.cycle_id == cycle_id, col(Charge.member_id).between(low, high)
            )
        ).one()
    else:  # everyone pays the share: no second pass over the rows just written
        total, subsidies = count * cycle.share_fen, 0
    root = proofs.prove_chunk(session, cycle, chunk_no, keys.secret, count, total or 0)
    session.add(
        ChargeChunk(
            cycle_id=cycle_id,
            chunk_no=chunk_no,
            rows=count,
            amount_fen=total or 0,
            subsidy_fen=subsidies or 0,
            done_at=now,
            root=root,
        )
    )
    return True


def _charge_columns(session: Session, cycle: SharingCycle, low: int, high: int):
    """The amount and annual-cap subsidy columns of a chunk's INSERT ... SELECT, and its FROM.

    Every member pays the same share unless the annual cap can bind this cycle; only then is each
    member's year read (set-based, one aggregate over this chunk's earlier charges).
    """
    share = cycle.share_fen
    if not cycle.annual_cap_binds:
        return literal(share), literal(0), select()
    cap = get_plan(cycle.plan).annual_cap_fen
    earlier = select(SharingCycle.id).where(
        SharingCycle.plan == cycle.plan,
        SharingCycle.status == CycleStatus.CLOSED,
        _in_year(cycle.charge_on.year),
    )
    paid = (
        select(Charge.member_id, func.sum(Charge.amount_fen).label("paid"))
        .where(col(Charge.cycle_id).in_(earlier), col(Charge.member_id).between(low, high))
        .group_by(Charge.member_id)
        .subquery()
    )
    room = cap - func.coalesce(paid.c.paid, 0)
    amount: ColumnElement[int] = case((room >= share, share), (room > 0, room), else_=0)
    source = select().select_from(Member).outerjoin(paid, paid.c.member_id == Member.id)
    return amount, share - amount, source


def finalise(
    session: Session, cycle_id: int, now: datetime, keys: proofs.ProofKeys
) -> SharingCycle | None:
    """Book a closing cycle once every chunk has recorded itself, and log its roots:
    closing -> closed.

    Returns the cycle when it is (now or already) closed, None while chunks are outstanding.
    """
    cycle = load_for_update(session, SharingCycle, cycle_id)
    if cycle is None or cycle.status == CycleStatus.CLOSED:
        return cycle
    if cycle.status != CycleStatus.CLOSING:
        return None
    done, rows, charged, annual_subsidy = session.exec(
        select(
            func.count(),
            func.coalesce(func.sum(ChargeChunk.rows), 0),
            func.coalesce(func.sum(ChargeChunk.amount_fen), 0),
            func.coalesce(func.sum(ChargeChunk.subsidy_fen), 0),
        ).where(ChargeChunk.cycle_id == cycle_id)
    ).one()
    if done < cycle.chunks:
        return None
    if cycle.chunks and rows != cycle.sharing_members:
        raise RuntimeError(
            f"cycle {cycle_id}: {rows} charges written for {cycle.sharing_members} sharing members"
        )
    cycle.charged_fen = charged
    cycle.annual_cap_subsidy_fen = annual_subsidy
    cycle.subsidy_fen = cycle.cap_subsidy_fen + cycle.platform_share_fen + annual_subsidy
    proofs.prove_cycle(session, cycle, keys, now)
    _book(session, cycle, now)
    cycle.status = CycleStatus.CLOSED
    cycle.closed_at = now
    session.add(cycle)
    return cycle


def ledger_movements(cycle: SharingCycle) -> list[tuple[str, str, str, int]]:
    """The cycle's double entries (key suffix, debit, credit, amount). Its pool takes what is
    owed in (members' charges, the platform's subsidy, the surplus carried in) and gives it to
    what is owed out (the patients' aid, the fee, the surplus carried out): it must end at zero.
    Members' charges become a receivable, cleared as debits are collected into cash; the subsidy
    is due from the platform, which pays it into cash before the patients are paid; the aid
    becomes a payable, cleared as each patient is paid out of cash."""
    plan, pool = cycle.plan, accounts.pool(cycle.plan, cycle.id)
    return [
        ("charges", accounts.receivable(plan), pool, cycle.charged_fen),
        ("cap-subsidy", accounts.subsidy_due(plan), pool, cycle.cap_subsidy_fen),
        ("annual-cap-subsidy", accounts.subsidy_due(plan), pool, cycle.annual_cap_subsidy_fen),
        # A plan winding down: the platform pays what the members would have shared.
        ("platform-share", accounts.subsidy_due(plan), pool, cycle.platform_share_fen),
        ("surplus-in", accounts.surplus(plan), pool, cycle.surplus_in_fen),
        ("aid", pool, accounts.aid_payable(plan), cycle.aid_fen),
        ("fee", pool, accounts.fee_income(plan), cycle.fee_fen),
        ("surplus-out", pool, accounts.surplus(plan), cycle.surplus_out_fen),
    ]


def _book(session: Session, cycle: SharingCycle, now: datetime) -> None:
    values = [
        {
            "key": f"cycle:{cycle.id}:{name}",
            "at": now,
            "debit": debit,
            "credit": credit,
            "amount_fen": amount,
            "cycle_id": cycle.id,
            "memo": f"{cycle.plan} {cycle.announce_on} {name}",
        }
        for name, debit, credit, amount in ledger_movements(cycle)
        if amount
    ]
    if values:
        session.execute(insert_ignoring_duplicates(session, LedgerEntry), values)


def latest_cycle(session: Session, plan_code: str, cycle_id: int | None = None) -> SharingCycle:
    query = select(SharingCycle).where(SharingCycle.plan == plan_code)
    if cycle_id is not None:
        query = query.where(SharingCycle.id == cycle_id)
    cycle = session.exec(query.order_by(col(SharingCycle.announce_on).desc())).first()
    if cycle is None:
        which = f"cycle {cycle_id}" if cycle_id is not None else "any cycle"
        raise LookupError(f"{plan_code} has no {which} yet; publish one with `huzhu cycle publish`")
    return cycle


def chunks_done(session: Session, cycle_id: int) -> int:
    return session.exec(select(func.count()).where(ChargeChunk.cycle_id == cycle_id)).one()


def _get_or_create_cycle(session: Session, plan_code: str, announce_on: date) -> SharingCycle:
    new = insert_ignoring_duplicates(session, SharingCycle).values(
        plan=plan_code,
        announce_on=announce_on,
        charge_on=charge_day(announce_on),
        status=CycleStatus.OPEN,
        cutoff_at=start_of_day(announce_on),
    )
    created = session.execute(new.execution_options(preserve_rowcount=True)).rowcount == 1
    cycle = session.exec(
        for_update(
            select(SharingCycle).where(
                SharingCycle.plan == plan_code, SharingCycle.announce_on == announce_on
            )
        )
    ).one()
    if created:
        add_charge_partition(session, cycle.id)
    return cycle


def due_cycle(session: Session, plan_code: str, at: datetime) -> SharingCycle:
    """The oldest unfinished cycle whose charge day has come; else the one closed today."""
    today = local_date(at)
    base = select(SharingCycle).where(
        SharingCycle.plan == plan_code, col(SharingCycle.charge_on) <= today
    )
    due = session.exec(
        base.where(
            col(SharingCycle.status).in_([CycleStatus.ANNOUNCED, CycleStatus.CLOSING])
        ).order_by(col(SharingCycle.announce_on))
    ).first()
    if due is None:
        due = session.exec(
            base.where(SharingCycle.charge_on == today, SharingCycle.status == CycleStatus.CLOSED)
        ).first()
    if due is None:
        raise NothingToClose(
            f"{plan_code} has no announced cycle whose charge day has come by {today}; "
            "publish one first with `huzhu cycle publish`"
        )
    return due


def _record_events(session, claim_ids, actor: str, from_state: State, to_state: State, at):
    """One event per claim in the set, written with one INSERT ... SELECT."""
    rows = select(
        Claim.id,
        literal(at, UTCDateTime),
        literal(actor),
        literal(str(from_state)),
        literal(str(to_state)),
    ).where(col(Claim.id).in_(claim_ids.scalar_subquery()))
    session.execute(
        insert(ClaimEvent).from_select(["claim_id", "at", "actor", "from_state", "to_state"], rows)
    )


def _surplus_carried_in(session: Session, plan_code: str, before: date) -> int:
    previous = session.exec(
        select(SharingCycle.surplus_out_fen)
        .where(
            SharingCycle.plan == plan_code,
            SharingCycle.status == CycleStatus.CLOSED,
            col(SharingCycle.announce_on) < before,
        )
        .order_by(col(SharingCycle.announce_on).desc())
    ).first()
    return previous or 0


def _in_year(year: int) -> ColumnElement[bool]:
    return col(SharingCycle.charge_on).between(date(year, 1, 1), date(year, 12, 31))


def _plan_shares_in_year(session: Session, plan_code: str, year: int) -> int:
    return session.exec(
        select(func.coalesce(func.sum(SharingCycle.share_fen), 0)).where(
            SharingCycle.plan == plan_code,
            SharingCycle.status == CycleStatus.CLOSED,
            _in_year(year),
        )
    ).one()


def stalled_closing_cycles(session: Session, before: datetime) -> list[int]:
    """Closing cycles with no progress since `before`: their chunk messages may be lost.

    A close still making progress is left alone, so the sweep does not flood the queue.
    """
    last_done = (
        select(ChargeChunk.cycle_id, func.max(ChargeChunk.done_at).label("last"))
        .group_by(ChargeChunk.cycle_id)
        .subquery()
    )
    return list(
        session.exec(
            select(SharingCycle.id)
            .outerjoin(last_done, last_done.c.cycle_id == SharingCycle.id)
            .where(
                SharingCycle.status == CycleStatus.CLOSING,
                # The last chunk written is the real clock of progress; before any, the close's.
                func.coalesce(last_done.c.last, SharingCycle.closing_at) < before,
            )
        ).all()
    )


def cycle_announced_on(session: Session, plan_code: str, announce_on: date) -> SharingCycle | None:
    return session.exec(
        select(SharingCycle).where(
            SharingCycle.plan == plan_code, SharingCycle.announce_on == announce_on
        )
    ).first()
