"""Money moving out of the books: debits of the charges, payouts of aid, refunds, arrears.

Each exchange with the payment provider is two transactions around one request: the first
claims the rows and fixes their idempotency keys (a recovery point), the second records the
answer. A redelivered step re-sends the same keys, and the provider answers without moving
money again.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select
from sqlmodel import insert as _insert

from domain.calendar import charge_day, local_date, next_announcement_day, start_of_day
from domain.claims import State
from domain.members import ExitReason
from domain.models import (
    Charge,
    Claim,
    CycleStatus,
    DebitStatus,
    LedgerEntry,
    Member,
    MemberEvent,
    Payout,
    PayoutStatus,
    SharingCycle,
)
from domain.money import ceil_div
from domain.services.events import move
from domain.services.store import insert_ignoring_duplicates, load_for_update

Account = aliased(Member)


@dataclass(frozen=True)
class Debit:
    cycle_id: int
    member_id: int
    key: str
    account: str
    amount_fen: int


def retry_deadline(announce_on: date) -> datetime:
    """Failed debits are retried until 00:00 two days before the next charge day."""
    return start_of_day(charge_day(next_announcement_day(announce_on)) - timedelta(days=2))


def open_round(session: Session, cycle_id: int, at: datetime, batch_size: int) -> tuple[int, int]:
    """Start the next round of debits of a closed cycle when one is due; returns the current
    round and its number of batches (0 when there is nothing to send).

    Round 1 is the charge day's collection. A retry round starts at most once a day, while the
    window is open, when the previous round has finished and some debits failed.
    """
    cycle = load_for_update(session, SharingCycle, cycle_id)
    if cycle is None or cycle.status != CycleStatus.CLOSED or cycle.arrears_settled_at:
        return 0, 0
    if cycle.collection_round == 0:
        cycle.collection_round = 1
        cycle.retry_until = retry_deadline(cycle.announce_on)
        cycle.collection_round_on = local_date(at)
    elif _retry_due(session, cycle, at):
        cycle.collection_round += 1
        cycle.collection_round_on = local_date(at)
    session.add(cycle)
    low, high = _account_span(session, cycle_id)
    batches = ceil_div(high - low + 1, batch_size) if high else 0
    cycle.debit_batch_size, cycle.first_account_id = batch_size, low
    return cycle.collection_round, batches


def _retry_due(session: Session, cycle: SharingCycle, at: datetime) -> bool:
    if cycle.retry_until is None or at >= cycle.retry_until:
        return False
    if cycle.collection_round_on and local_date(at) <= cycle.collection_round_on:
        return False
    counts = dict(
        session.exec(
            select(Charge.debit_status, func.count())
            .where(Charge.cycle_id == cycle.id)
            .group_by(Charge.debit_status)
        ).all()
    )
    unfinished = counts.get(DebitStatus.DUE, 0) + counts.get(DebitStatus.SENDING, 0)
    return not unfinished and counts.get(DebitStatus.FAILED, 0) > 0


def _account_span(session: Session, cycle_id: int) -> tuple[int, int]:
    """Lowest and highest paying account (the payer's member id, or one's own) of a cycle."""
    account_id = func.coalesce(Member.payer_id, Member.id)
    low, high = session.exec(
        select(func.min(account_id), func.max(account_id))
        .join(Charge, col(Charge.member_id) == Member.id)
        .where(Charge.cycle_id == cycle_id)
    ).one()
    return low or 0, high or 0


def claim_batch(session: Session, cycle_id: int, batch_no: int, round_no: int) -> list[Debit]:
    """Fix the debits of one batch of payer accounts for this round, in the order they must be
    taken: each account's payer first, then the family in order of joining.

    Charges not yet tried in this round become 'sending' with the round in their key; charges
    already sending (a redelivered batch) keep their key. Zero charges (cut to nothing by the
    annual cap) are collected at once.
    """
    cycle = session.get(SharingCycle, cycle_id)
    if cycle is None or round_no != cycle.collection_round or cycle.arrears_settled_at:
        return []
    low = cycle.first_account_id + batch_no * cycle.debit_batch_size
    high = low + cycle.debit_batch_size - 1
    account_id = func.coalesce(Member.payer_id, Member.id)
    in_batch = select(Member.id).where(account_id.between(low, high))
    base = update(Charge).where(Charge.cycle_id == cycle_id, col(Charge.member_id).in_(in_batch))
    session.execute(
        base.where(Charge.amount_fen == 0, Charge.debit_status == DebitStatus.DUE).values(
            debit_status=DebitStatus.COLLECTED
        )
    )
    session.execute(
        base.where(
            col(Charge.debit_status).in_([DebitStatus.DUE, DebitStatus.FAILED]),
            col(Charge.debit_attempts) < round_no,
        ).values(debit_status=DebitStatus.SENDING, debit_attempts=round_no)
    )
    rows = session.exec(
        select(Charge.member_id, Charge.amount_fen, Charge.debit_attempts, Account.member_ref)
        .join(Member, col(Member.id) == Charge.member_id)
        .join(Account, col(Account.id) == account_id)
        .where(
            Charge.cycle_id == cycle_id,
            Charge.debit_status == DebitStatus.SENDING,
            account_id.between(low, high),
        )
        .order_by(account_id, col(Member.id) != account_id, Member.joined_at, Member.id)
    ).all()
    return [
        Debit(cycle_id, member_id, f"charge:{cycle_id}:{member_id}:{attempt}", account, amount)
        for member_id, amount, attempt, account in rows
    ]


def claim_arrears(session: Session, plan: str, member_ref: str) -> list[Debit]:
    """Fix a new debit of every unpaid charge on a member's paying account (their own and the
    family's they pay for), oldest cycle first; keys of the 'settle' kind, one per attempt."""
    member = session.exec(
        select(Member).where(Member.plan == plan, Member.member_ref == member_ref)
    ).first()
    if member is None:
        raise LookupError(f"{member_ref} is not a member of {plan}")
    account_id = member.payer_id or member.id
    on_account = select(Member.id).where(func.coalesce(Member.payer_id, Member.id) == account_id)
    session.execute(
        update(Charge)
        .where(Charge.debit_status == DebitStatus.FAILED, col(Charge.member_id).in_(on_account))
        .values(debit_status=DebitStatus.SENDING, debit_attempts=Charge.debit_attempts + 1)
    )
    account = session.get(Member, account_id)
    assert account is not None
    rows = session.exec(
        select(Charge.cycle_id, Charge.member_id, Charge.amount_fen, Charge.debit_attempts)
        .where(Charge.debit_status == DebitStatus.SENDING, col(Charge.member_id).in_(on_account))
        .order_by(Charge.cycle_id, col(Charge.member_id) != account_id, Charge.member_id)
    ).all()
    return [
        Debit(c, m, f"settle:{c}:{m}:{attempt}", account.member_ref, amount)
        for c, m, amount, attempt in rows
    ]


def record_debits(
    session: Session, debits: list[Debit], succeeded: set[str], now: datetime, ledger_key: str
) -> int:
    """Record the provider's answers; returns the fen collected. Only rows still 'sending' move,
    so recording the same answer twice changes nothing. One ledger entry per cycle."""
    collected = 0
    for cycle_id in sorted({d.cycle_id for d in debits}):
        mine = [d for d in debits if d.cycle_id == cycle_id]
        won = [d.member_id for d in mine if d.key in succeeded]
        lost = [d.member_id for d in mine if d.key not in succeeded]
        sending = update(Charge).where(
            Charge.cycle_id == cycle_id, Charge.debit_status == DebitStatus.SENDING
        )
        amount = 0
        if won:
            amount = session.exec(
                select(func.coalesce(func.sum(Charge.amount_fen), 0)).where(
                    Charge.cycle_id == cycle_id,
                    Charge.debit_status == DebitStatus.SENDING,
                    col(Charge.member_id).in_(won),
                )
            ).one()
            session.execute(
                sending.where(col(Charge.member_id).in_(won)).values(
                    debit_status=DebitStatus.COLLECTED,
                    collected_fen=Charge.amount_fen,
                    debited_at=now,
                )
            )
        if lost:
            session.execute(
                sending.where(col(Charge.member_id).in_(lost)).values(
                    debit_status=DebitStatus.FAILED
                )
            )
        if amount:
            plan = session.get(SharingCycle, cycle_id).plan  # type: ignore[union-attr]
            book(
                session,
                f"{ledger_key}:{cycle_id}",
                debit=f"cash:{plan}",
                credit=f"members:{plan}",
                amount_fen=amount,
                at=now,
                cycle_id=cycle_id,
            )
        collected += amount
    return collected


def book(
    session: Session,
    key: str,
    debit: str,
    credit: str,
    amount_fen: int,
    at: datetime,
    cycle_id: int | None = None,
    claim_id: int | None = None,
) -> None:
    """One double entry, once: its key is unique, so booking it again changes nothing."""
    session.execute(
        insert_ignoring_duplicates(session, LedgerEntry).values(
            key=key,
            at=at,
            debit=debit,
            credit=credit,
            amount_fen=amount_fen,
            cycle_id=cycle_id,
            claim_id=claim_id,
            memo=key,
        )
    )


def close_window(session: Session, cycle_id: int, at: datetime) -> list[int]:
    """Once the retry window has closed: what is still unpaid stays as arrears, and members
    unpaid in this cycle and the plan's previous one are removed, each with an event saying why.
    Returns the removed member ids; does nothing before the window closes or a second time."""
    cycle = load_for_update(session, SharingCycle, cycle_id)
    if (
        cycle is None
        or cycle.retry_until is None
        or at < cycle.retry_until
        or cycle.arrears_settled_at is not None
    ):
        return []
    cycle.arrears_settled_at = at
    session.add(cycle)
    previous = session.exec(
        select(SharingCycle.id)
        .where(
            SharingCycle.plan == cycle.plan,
            SharingCycle.status == CycleStatus.CLOSED,
            col(SharingCycle.announce_on) < cycle.announce_on,
        )
        .order_by(col(SharingCycle.announce_on).desc())
    ).first()
    if previous is None:
        return []
    unpaid_before = select(Charge.member_id).where(
        Charge.cycle_id == previous, Charge.debit_status != DebitStatus.COLLECTED
    )
    removed = list(
        session.exec(
            select(Charge.member_id)
            .join(Member, col(Member.id) == Charge.member_id)
            .where(
                Charge.cycle_id == cycle_id,
                Charge.debit_status != DebitStatus.COLLECTED,
                col(Charge.member_id).in_(unpaid_before),
                col(Member.exited_at).is_(None),
            )
        ).all()
    )
    if removed:
        why = (
            f"unpaid in two consecutive cycles ({previous} and {cycle_id}); "
            "the arrears can still be settled"
        )
        session.execute(
            update(Member)
            .where(col(Member.id).in_(removed))
            .values(exited_at=at, exit_reason=ExitReason.NON_PAYMENT)
        )
        session.exec(
            _insert(MemberEvent),
            params=[{"member_id": m, "at": at, "kind": "removed", "reason": why} for m in removed],
        )
    return removed


def create_cycle_payouts(session: Session, cycle_id: int, now: datetime) -> list[int]:
    """A payout row for each settled claim of the cycle (once), and the ids still to pay."""
    settled = session.exec(
        select(Claim, Member)
        .join(Member, col(Member.id) == Claim.member_id)
        .where(Claim.cycle_id == cycle_id, Claim.state == State.SETTLED)
    ).all()
    for claim, member in settled:
        session.execute(
            insert_ignoring_duplicates(session, Payout).values(
                key=f"aid:{claim.id}",
                purpose="aid",
                plan=member.plan,
                member_id=member.id,
                claim_id=claim.id,
                account=member.member_ref,
                amount_fen=claim.amount_fen,
                status=PayoutStatus.PENDING,
                attempts=0,
                created_at=now,
            )
        )
    return pending_payouts(session, cycle_id=cycle_id)


def create_refund(session: Session, member: Member, now: datetime) -> None:
    """Refund, without interest, what a member paid in this plan: their illness began inside
    the waiting period, so the plan never covered them. Paid to the account that paid."""
    paid = session.exec(
        select(func.coalesce(func.sum(Charge.collected_fen), 0))
        .join(SharingCycle, col(SharingCycle.id) == Charge.cycle_id)
        .where(Charge.member_id == member.id, SharingCycle.plan == member.plan)
    ).one()
    if not paid:
        return
    account = session.get(Member, member.payer_id) if member.payer_id else member
    assert account is not None
    session.execute(
        insert_ignoring_duplicates(session, Payout).values(
            key=f"refund:{member.plan}:{member.id}",
            purpose="refund",
            plan=member.plan,
            member_id=member.id,
            account=account.member_ref,
            amount_fen=paid,
            status=PayoutStatus.PENDING,
            attempts=0,
            created_at=now,
        )
    )


def pending_payouts(session: Session, cycle_id: int | None = None, limit: int = 1000) -> list[int]:
    query = select(Payout.id).where(Payout.status == PayoutStatus.PENDING)
    if cycle_id is not None:
        query = query.where(
            col(Payout.claim_id).in_(select(Claim.id).where(Claim.cycle_id == cycle_id))
        )
    return list(session.exec(query.order_by(col(Payout.id)).limit(limit)).all())


def claim_payout(session: Session, payout_id: int) -> Payout | None:
    """The payout to send (its key never changes), counting the attempt; None once decided."""
    payout = load_for_update(session, Payout, payout_id)
    if payout is None or payout.status != PayoutStatus.PENDING:
        return None
    payout.attempts += 1
    session.add(payout)
    return payout


def record_payout(
    session: Session,
    payout_id: int,
    succeeded: bool,
    provider_ref: str | None,
    reason: str | None,
    now: datetime,
) -> Payout | None:
    """Record the provider's answer once: the claim becomes paid and the ledger shows it."""
    payout = load_for_update(session, Payout, payout_id)
    if payout is None or payout.status != PayoutStatus.PENDING:
        return payout
    payout.provider_ref = provider_ref
    if not succeeded:
        payout.status = PayoutStatus.FAILED
        payout.reason = (reason or "refused by the provider")[:200]
        session.add(payout)
        return payout
    payout.status = PayoutStatus.PAID
    payout.paid_at = now
    session.add(payout)
    if payout.purpose == "aid":
        claim = load_for_update(session, Claim, payout.claim_id)
        assert claim is not None
        if claim.state == State.SETTLED:
            move(session, claim, State.PAID, "payments", now, f"paid out ({provider_ref})")
        book(
            session,
            f"payout:{payout.key}",
            "patients",
            f"aid-payable:{payout.plan}",
            payout.amount_fen,
            now,
            claim_id=payout.claim_id,
        )
    else:
        book(
            session,
            f"payout:{payout.key}",
            f"refunds:{payout.plan}",
            "platform",
            payout.amount_fen,
            now,
        )
    return payout


def money_figures(session: Session, cycle_id: int) -> dict[str, int]:
    """What has moved for a cycle so far: collected, outstanding, paid out."""
    collected, outstanding, failed = session.exec(
        select(
            func.coalesce(func.sum(Charge.collected_fen), 0),
            func.coalesce(func.sum(Charge.amount_fen - Charge.collected_fen), 0),
            func.count().filter(Charge.debit_status == DebitStatus.FAILED),
        ).where(Charge.cycle_id == cycle_id)
    ).one()
    paid_out, payouts = session.exec(
        select(func.coalesce(func.sum(Payout.amount_fen), 0), func.count()).where(
            Payout.status == PayoutStatus.PAID,
            col(Payout.claim_id).in_(select(Claim.id).where(Claim.cycle_id == cycle_id)),
        )
    ).one()
    # int(): PostgreSQL sums big integers as numeric.
    return {
        "collected_fen": int(collected),
        "outstanding_fen": int(outstanding),
        "debits_failed": failed,
        "paid_out_fen": int(paid_out),
        "payouts": payouts,
    }


def money_settled(session: Session, cycle_ids: list[int]) -> bool:
    """No debit of these cycles waiting for the provider, and no payout pending."""
    in_flight = session.exec(
        select(func.count()).where(
            col(Charge.cycle_id).in_(cycle_ids),
            col(Charge.debit_status).in_([DebitStatus.DUE, DebitStatus.SENDING]),
        )
    ).one()
    closed = session.exec(
        select(func.count()).where(
            col(SharingCycle.id).in_(cycle_ids), SharingCycle.collection_round > 0
        )
    ).one()
    return not in_flight and closed == len(cycle_ids) and not pending_payouts(session, limit=1)


def note_settlement(
    session: Session, debits: list[Debit], succeeded: set[str], now: datetime
) -> None:
    """Say in each member's history that their arrears were paid (or still are not)."""
    for member_id in sorted({d.member_id for d in debits}):
        mine = [d for d in debits if d.member_id == member_id]
        paid = [d for d in mine if d.key in succeeded]
        reason = (
            f"{len(paid)} of {len(mine)} unpaid charges collected"
            if paid
            else f"{len(mine)} unpaid charges refused again by the provider"
        )
        session.add(MemberEvent(member_id=member_id, at=now, kind="arrears", reason=reason))
