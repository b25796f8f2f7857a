"""Money moving out of the books: debits of the charges, payouts of aid, refunds, arrears.

Each exchange with the payment provider is two transactions around one request: the first
claims the rows and fixes their idempotency keys (a recovery point), the second records the
answer. A redelivered step re-sends the same keys, and the provider answers without moving
money again.
"""

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, String, case, cast, literal, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select
from sqlmodel import insert as _insert

from domain import accounts
from domain.calendar import charge_day, local_date, next_announcement_day, start_of_day
from domain.claims import Reason, State
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
    PlanWindDown,
    SharingCycle,
    UTCDateTime,
)
from domain.money import ceil_div
from domain.services.events import move
from domain.services.store import insert_ignoring_duplicates, load_for_update, lock_cash
from domain.winddown import HAS_ENDED

Account = aliased(Member)


@dataclass(frozen=True)
class Debit:
    cycle_id: int
    member_id: int
    key: str
    account: str
    amount_fen: int


UNANSWERED = (DebitStatus.DUE, DebitStatus.SENDING)


def retry_deadline(announce_on: date) -> datetime:
    """Failed debits are retried until 00:00 two days before the next charge day."""
    return start_of_day(charge_day(next_announcement_day(announce_on)) - timedelta(days=2))


def open_round(session: Session, cycle_id: int, at: datetime, batch_size: int) -> tuple[int, int]:
    """Start the next round of debits of a closed cycle when one is due; returns the current
    round and its number of batches (0 when the collection is over).

    Round 1 is the charge day's collection. A retry round starts at most once a day, while the
    window is open, when some debits failed. Every round's batches also re-send, under their
    stored keys, the debits still waiting for an answer.
    """
    cycle = load_for_update(session, SharingCycle, cycle_id)
    if cycle is None or cycle.status != CycleStatus.CLOSED or cycle.arrears_settled_at:
        return 0, 0
    if cycle.collection_round == 0:
        cycle.collection_round = 1
        cycle.retry_until = retry_deadline(cycle.announce_on)
        cycle.collection_round_on = local_date(at)
        low, high = _account_span(session, cycle_id)
        cycle.debit_batch_size, cycle.first_account_id = batch_size, low
        cycle.debit_batches = ceil_div(high - low + 1, batch_size) if high else 0
    elif _retry_due(session, cycle, at):
        cycle.collection_round += 1
        cycle.collection_round_on = local_date(at)
    session.add(cycle)
    return cycle.collection_round, cycle.debit_batches


def _retry_due(session: Session, cycle: SharingCycle, at: datetime) -> bool:
    if cycle.retry_until is None or at >= cycle.retry_until:
        return False
    if cycle.collection_round_on and local_date(at) <= cycle.collection_round_on:
        return False
    return _count(session, cycle.id, [DebitStatus.FAILED]) > 0


def _count(session: Session, cycle_id: int, statuses) -> int:
    return session.exec(
        select(func.count()).where(
            Charge.cycle_id == cycle_id, col(Charge.debit_status).in_(list(statuses))
        )
    ).one()


def _account_span(session: Session, cycle_id: int) -> tuple[int, int]:
    low, high = session.exec(
        select(func.min(Charge.account_id), func.max(Charge.account_id)).where(
            Charge.cycle_id == cycle_id
        )
    ).one()
    return low or 0, high or 0


def _key(kind: str, attempt) -> ColumnElement[str]:
    """'<kind>:<cycle>:<member>:<attempt>', built in SQL for a whole set of charges at once."""
    return (
        literal(f"{kind}:")
        + cast(Charge.cycle_id, String)
        + literal(":")
        + cast(Charge.member_id, String)
        + literal(":")
        + cast(attempt, String)
    )


def claim_batch(session: Session, cycle_id: int, batch_no: int, round_no: int) -> list[Debit]:
    """Fix the debits of one batch of payer accounts for this round, in the order they must be
    taken: each account's payer first, then the family in order of joining.

    Charges not yet tried in this round get their key for it and become 'sending'; charges
    already sending (a redelivery, or a request whose answer was lost) keep their stored key.
    Zero charges (cut to nothing by the annual cap) are collected at once.
    """
    cycle = session.get(SharingCycle, cycle_id)
    if cycle is None or round_no != cycle.collection_round or cycle.arrears_settled_at:
        return []
    low = cycle.first_account_id + batch_no * cycle.debit_batch_size
    in_batch = (
        Charge.cycle_id == cycle_id,
        col(Charge.account_id).between(low, low + cycle.debit_batch_size - 1),
    )
    session.execute(
        update(Charge)
        .where(*in_batch, Charge.amount_fen == 0, Charge.debit_status == DebitStatus.DUE)
        .values(debit_status=DebitStatus.COLLECTED)
    )
    session.execute(
        update(Charge)
        .where(
            *in_batch,
            col(Charge.debit_status).in_([DebitStatus.DUE, DebitStatus.FAILED]),
            col(Charge.debit_attempts) < round_no,
        )
        .values(
            debit_status=DebitStatus.SENDING,
            debit_attempts=round_no,
            debit_key=_key("charge", literal(round_no)),
        )
    )
    return _sending(session, *in_batch)


def _sending(session: Session, *where) -> list[Debit]:
    rows = session.exec(
        select(
            Charge.cycle_id,
            Charge.member_id,
            Charge.debit_key,
            Charge.amount_fen,
            Account.member_ref,
        )
        .join(Member, col(Member.id) == Charge.member_id)
        .join(Account, col(Account.id) == Charge.account_id)
        .where(*where, Charge.debit_status == DebitStatus.SENDING)
        .order_by(
            Charge.cycle_id,
            Charge.account_id,
            col(Member.id) != Charge.account_id,
            Member.joined_at,
            Member.id,
        )
    ).all()
    return [Debit(c, m, str(key), account, amount) for c, m, key, amount, account in rows]


def claim_arrears(session: Session, plan: str, member_ref: str) -> list[Debit]:
    """Fix a debit of every charge left unpaid on a member's paying account (their own and the
    family's they pay for, in every plan) in cycles whose collection window has closed; debits
    of such charges already in flight are sent again under their stored key."""
    member = session.exec(
        select(Member).where(Member.plan == plan, Member.member_ref == member_ref)
    ).first()
    if member is None:
        raise LookupError(f"{member_ref} is not a member of {plan}")
    payer = session.get(Member, member.payer_id) if member.payer_id else member
    assert payer is not None
    # A family's charges name the payer's first membership as their account, which may be a row
    # of another plan: the person's account is every row of their member_ref.
    accounts_of_payer = select(Member.id).where(Member.member_ref == payer.member_ref)
    closed = select(SharingCycle.id).where(col(SharingCycle.arrears_settled_at).is_not(None))
    mine = (
        col(Charge.account_id).in_(accounts_of_payer),
        col(Charge.cycle_id).in_(closed),
    )
    session.execute(
        update(Charge)
        .where(*mine, col(Charge.debit_status).in_([DebitStatus.FAILED, DebitStatus.DUE]))
        .values(
            debit_status=DebitStatus.SENDING,
            debit_attempts=Charge.debit_attempts + 1,
            debit_key=_key("settle", Charge.debit_attempts + 1),
        )
    )
    return _sending(session, *mine)


def record_debits(session: Session, debits: list[Debit], succeeded: set[str], now: datetime) -> int:
    """Record the provider's answers; returns the fen collected. A row moves only if it still
    waits on the very key that was answered, so an answer recorded twice, or a stale answer to
    an older attempt, changes nothing. One ledger entry per cycle and set of debits."""
    collected = 0
    for cycle_id in sorted({d.cycle_id for d in debits}):
        won = [d.key for d in debits if d.cycle_id == cycle_id and d.key in succeeded]
        lost = [d.key for d in debits if d.cycle_id == cycle_id and d.key not in succeeded]
        waiting = (
            Charge.cycle_id == cycle_id,
            Charge.debit_status == DebitStatus.SENDING,
        )
        amount = 0
        if won:
            amount = session.exec(
                select(func.coalesce(func.sum(Charge.amount_fen), 0)).where(
                    *waiting, col(Charge.debit_key).in_(won)
                )
            ).one()
            session.execute(
                update(Charge)
                .where(*waiting, col(Charge.debit_key).in_(won))
                .values(
                    debit_status=DebitStatus.COLLECTED,
                    collected_fen=Charge.amount_fen,
                    debited_at=now,
                )
            )
        if lost:
            session.execute(
                update(Charge)
                .where(*waiting, col(Charge.debit_key).in_(lost))
                .values(debit_status=DebitStatus.FAILED)
            )
        if amount:
            plan = session.get(SharingCycle, cycle_id).plan  # type: ignore[union-attr]
            digest = hashlib.sha256("\n".join(sorted(won)).encode()).hexdigest()[:24]
            book(
                session,
                f"debits:{cycle_id}:{digest}",
                accounts.cash(plan),
                accounts.receivable(plan),
                amount,
                now,
                cycle_id=cycle_id,
            )
        collected += int(amount)
    paid = [d.member_id for d in debits if d.key in succeeded]
    refund_waiting_period_shares(session, paid, now)
    refund_late_shares(session, paid, now)
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
    """Once the retry window has closed and every debit has its answer: what is still unpaid
    stays as arrears, and members whose debits failed in this cycle and in the plan's previous
    one are removed, each with an event saying why. Returns the removed member ids."""
    cycle = load_for_update(session, SharingCycle, cycle_id)
    if (
        cycle is None
        or cycle.retry_until is None
        or at < cycle.retry_until
        or cycle.arrears_settled_at is not None
        or _count(session, cycle_id, UNANSWERED)
    ):
        return []
    cycle.arrears_settled_at = at
    session.add(cycle)
    # The previous cycle that charged anyone: one that charged nothing (no cases) is no cycle
    # a member could fail to pay, so it does not break "two consecutive unpaid cycles".
    previous = session.exec(
        select(SharingCycle.id)
        .where(
            SharingCycle.plan == cycle.plan,
            SharingCycle.status == CycleStatus.CLOSED,
            SharingCycle.chunks > 0,
            col(SharingCycle.announce_on) < cycle.announce_on,
        )
        .order_by(col(SharingCycle.announce_on).desc())
    ).first()
    if previous is None:
        return []
    failed_before = select(Charge.member_id).where(
        Charge.cycle_id == previous, Charge.debit_status == DebitStatus.FAILED
    )
    removed = list(
        session.exec(
            select(Charge.member_id)
            .join(Member, col(Member.id) == Charge.member_id)
            .where(
                Charge.cycle_id == cycle_id,
                Charge.debit_status == DebitStatus.FAILED,
                col(Charge.member_id).in_(failed_before),
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
    """The platform pays the cycle's subsidy into cash, then a payout row is made for each settled
    claim of the cycle (once); returns the ids still to pay. Safe to run again at any time."""
    cycle = session.get(SharingCycle, cycle_id)
    if cycle is None or cycle.status != CycleStatus.CLOSED:
        return []
    if cycle.subsidy_fen:
        book(
            session,
            f"funding:{cycle_id}:subsidy",
            accounts.cash(cycle.plan),
            accounts.subsidy_due(cycle.plan),
            cycle.subsidy_fen,
            now,
            cycle_id=cycle_id,
        )
    rows = (
        select(
            literal("aid:") + cast(Claim.id, String),
            literal("aid"),
            Member.plan,
            Member.id,
            Claim.id,
            Member.member_ref,
            Claim.amount_fen,
            literal(PayoutStatus.PENDING),
            literal(0),
            literal(now, UTCDateTime),
        )
        .join(Member, col(Member.id) == Claim.member_id)
        .where(Claim.cycle_id == cycle_id, Claim.state == State.SETTLED)
    )
    columns = [
        "key",
        "purpose",
        "plan",
        "member_id",
        "claim_id",
        "account",
        "amount_fen",
        "status",
        "attempts",
        "created_at",
    ]
    session.execute(insert_ignoring_duplicates(session, Payout).from_select(columns, rows))
    return pending_payouts(session, cycle_id=cycle_id)


def refund_waiting_period_shares(session: Session, member_ids: list[int], now: datetime) -> None:
    """Refund, without interest, every share collected from these members if a claim of theirs
    was rejected for an illness that began inside the waiting period (the plan never covered
    them), whether or not they had already left."""
    if member_ids:
        _refund_collected(
            session,
            now,
            col(Charge.member_id).in_(member_ids),
            col(Member.id).in_(waiting_period_rejections()),
        )


def refund_late_shares(session: Session, member_ids: list[int], now: datetime) -> None:
    """A share collected after its plan ended refunding every share (arrears settled late) is
    refunded as it is collected: the plan owes it back at once."""
    if member_ids:
        refunding = select(PlanWindDown.plan).where(
            col(PlanWindDown.refund_all_shares), col(PlanWindDown.stage).in_(list(HAS_ENDED))
        )
        _refund_collected(
            session, now, col(Charge.member_id).in_(member_ids), col(Member.plan).in_(refunding)
        )


def refund_all_shares(session: Session, plan: str, now: datetime) -> int:
    """A plan that ends refunding every share it ever collected (美团互助's way): a refund per
    collected charge of the plan; returns how many are due. A share already refunded (after a
    waiting-period illness) has its payout's key and is not refunded twice."""
    return _refund_collected(session, now, Member.plan == plan)


def _refund_collected(session: Session, now: datetime, *which) -> int:
    """One refund payout per collected charge among `which`, to the account that paid it, under
    the key refund:<cycle>:<member>, set-based; returns the payouts newly made."""
    rows = (
        select(
            literal("refund:")
            + cast(Charge.cycle_id, String)
            + literal(":")
            + cast(Charge.member_id, String),
            literal("refund"),
            Member.plan,
            Member.id,
            Account.member_ref,
            Charge.collected_fen,
            literal(PayoutStatus.PENDING),
            literal(0),
            literal(now, UTCDateTime),
        )
        .join(Member, col(Member.id) == Charge.member_id)
        .join(Account, col(Account.id) == Charge.account_id)
        .where(
            Charge.debit_status == DebitStatus.COLLECTED,
            Charge.collected_fen > 0,
            *which,
        )
    )
    columns = [
        "key",
        "purpose",
        "plan",
        "member_id",
        "account",
        "amount_fen",
        "status",
        "attempts",
        "created_at",
    ]
    made = insert_ignoring_duplicates(session, Payout).from_select(columns, rows)
    return session.execute(made.execution_options(preserve_rowcount=True)).rowcount


def waiting_period_rejections():
    """The members with a claim rejected because the illness began inside the waiting period."""
    return select(Claim.member_id).where(
        Claim.state == State.REJECTED, Claim.reason_code == Reason.INSIDE_WAITING_PERIOD
    )


def pending_payouts(session: Session, cycle_id: int | None = None, limit: int = 1000) -> list[int]:
    """Payouts still to send, the least tried first: a thousand that keep failing for a while
    must not starve the ones never sent."""
    query = select(Payout.id).where(Payout.status == PayoutStatus.PENDING)
    if cycle_id is not None:
        query = query.where(
            col(Payout.claim_id).in_(select(Claim.id).where(Claim.cycle_id == cycle_id))
        )
    ordered = query.order_by(col(Payout.attempts), col(Payout.id))
    return list(session.exec(ordered.limit(limit)).all())


def settled_without_payout(session: Session) -> list[int]:
    """Closed cycles with a settled claim that has no payout row: their pay_out_cycle message
    was lost (or never sent), and the sweep makes the payouts."""
    has_payout = select(Payout.claim_id).where(col(Payout.claim_id).is_not(None))
    return list(
        session.exec(
            select(Claim.cycle_id)
            .join(SharingCycle, col(SharingCycle.id) == Claim.cycle_id)
            .where(
                Claim.state == State.SETTLED,
                SharingCycle.status == CycleStatus.CLOSED,
                col(Claim.id).not_in(has_payout),
            )
            .distinct()
        ).all()
    )


def claim_payout(session: Session, payout_id: int, now: datetime) -> Payout | None:
    """The payout to send (its key never changes), counting the attempt; None once decided.

    Cash pays it: what the plan's cash cannot cover, after the payouts already on their way,
    the platform pays in first, with an entry of its own, so cash is never spent twice and
    never goes below zero.
    """
    found = session.get(Payout, payout_id)
    if found is None:
        return None
    lock_cash(session, found.plan)
    payout = load_for_update(session, Payout, payout_id)
    if payout is None or payout.status != PayoutStatus.PENDING:
        return None
    payout.attempts += 1
    session.add(payout)
    short = payout.amount_fen - available_cash(session, payout)
    if short > 0:
        claim = session.get(Claim, payout.claim_id) if payout.claim_id else None
        book(
            session,
            f"funding:{payout.key}:{payout.attempts}",
            accounts.cash(payout.plan),
            accounts.platform_funding(payout.plan),
            short,
            now,
            cycle_id=claim.cycle_id if claim else None,
            claim_id=payout.claim_id,
        )
    return payout


def account_balance(session: Session, account: str) -> int:
    """Debits less credits of one account."""
    signed = case(
        (LedgerEntry.debit == account, LedgerEntry.amount_fen), else_=-LedgerEntry.amount_fen
    )
    balance = select(func.coalesce(func.sum(signed), 0)).where(
        or_(LedgerEntry.debit == account, LedgerEntry.credit == account)
    )
    return int(session.exec(balance).one())


def available_cash(session: Session, payout: Payout) -> int:
    """The plan's cash less what the other payouts already sent (answer not yet recorded) will
    take out of it."""
    on_their_way = session.exec(
        select(func.coalesce(func.sum(Payout.amount_fen), 0)).where(
            Payout.plan == payout.plan,
            Payout.status == PayoutStatus.PENDING,
            Payout.attempts > 0,
            Payout.id != payout.id,
        )
    ).one()
    return account_balance(session, accounts.cash(payout.plan)) - int(on_their_way)


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
        # The aid owed to the patient is paid out of cash: the payable is cleared.
        claim = load_for_update(session, Claim, payout.claim_id)
        assert claim is not None
        if claim.state == State.SETTLED:
            move(session, claim, State.PAID, "payments", now, f"paid out ({provider_ref})")
        owed, cycle_id = accounts.aid_payable(payout.plan), claim.cycle_id
    else:
        owed, cycle_id = accounts.refunds(payout.plan), None
    book(
        session,
        f"payout:{payout.key}",
        owed,
        accounts.cash(payout.plan),
        payout.amount_fen,
        now,
        cycle_id=cycle_id,
        claim_id=payout.claim_id,
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
