"""The audit: every closed cycle's books recomputed from the rows, to the fen."""

from dataclasses import dataclass, field

from sqlmodel import Session, col, func, or_, select

from domain.claims import State
from domain.models import (
    Charge,
    Claim,
    ClaimEvent,
    DebitStatus,
    LedgerEntry,
    Member,
    Payout,
    PayoutStatus,
    SharingCycle,
)
from domain.money import apply_rate
from domain.plans import get_plan
from domain.services.claims import MAX_ATTEMPTS
from domain.services.cycles import CycleStatus, ledger_movements
from domain.services.members import shares_at
from domain.sharing import compute_share


@dataclass
class CycleAudit:
    plan: str
    cycle_id: int
    announce_on: str
    problems: list[str] = field(default_factory=list)


@dataclass
class AuditReport:
    cycles: list[CycleAudit]
    general: list[str] = field(default_factory=list)
    # Not imbalances: things a person must act on (a refused payout, a step that keeps failing).
    attention: list[str] = field(default_factory=list)
    # Every submission received, by the state its claim is in: all are accounted for.
    claims: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> list[str]:
        per_cycle = [
            f"{c.plan} cycle {c.cycle_id} ({c.announce_on}): {p}"
            for c in self.cycles
            for p in c.problems
        ]
        return self.general + per_cycle


def audit(session: Session) -> AuditReport:
    cycles = session.exec(
        select(SharingCycle)
        .where(SharingCycle.status == CycleStatus.CLOSED)
        .order_by(col(SharingCycle.plan), col(SharingCycle.announce_on))
    ).all()
    surplus_by_plan: dict[str, int] = {}
    outstanding_by_plan: dict[str, int] = {}
    report = AuditReport(
        [], _members_paid_twice(session) + _payouts(session) + _claims_moved_once(session)
    )
    report.claims = claim_counts(session)
    for cycle in cycles:
        result = CycleAudit(cycle.plan, cycle.id, str(cycle.announce_on))
        result.problems, outstanding = _check_cycle(
            session, cycle, surplus_by_plan.get(cycle.plan, 0)
        )
        surplus_by_plan[cycle.plan] = cycle.surplus_out_fen
        outstanding_by_plan[cycle.plan] = outstanding_by_plan.get(cycle.plan, 0) + outstanding
        report.cycles.append(result)
    report.general += _receivables(session, outstanding_by_plan)
    report.attention = _attention(session)
    return report


def _attention(session: Session) -> list[str]:
    refused = session.exec(
        select(Payout.key, Payout.reason).where(Payout.status == PayoutStatus.FAILED)
    ).all()
    stuck = session.exec(
        select(Claim.submission_id, Claim.state).where(Claim.attempts > MAX_ATTEMPTS)
    ).all()
    return [f"payout {key} refused: {reason}" for key, reason in refused] + [
        f"claim {ref}: its {state} step failed {MAX_ATTEMPTS} times" for ref, state in stuck
    ]


def _payouts(session: Session) -> list[str]:
    """Each paid claim paid exactly once, for its amount, and booked; nothing else paid as aid."""
    problems = []
    paid_claims = session.exec(
        select(Claim.id, Claim.amount_fen).where(Claim.state == State.PAID)
    ).all()
    payouts = {
        p.claim_id: p
        for p in session.exec(
            select(Payout).where(Payout.purpose == "aid", Payout.status == PayoutStatus.PAID)
        ).all()
    }
    booked = {
        e.key: e.amount_fen
        for e in session.exec(select(LedgerEntry).where(col(LedgerEntry.key).startswith("payout:")))
    }
    for claim_id, amount in paid_claims:
        payout = payouts.pop(claim_id, None)
        if payout is None or payout.amount_fen != amount:
            problems.append(f"claim {claim_id} is paid but has no payout of {amount} fen")
        elif booked.get(f"payout:{payout.key}") != amount:
            problems.append(f"the payout of claim {claim_id} is not in the ledger")
    problems += [f"claim {claim_id} was paid out but is not marked paid" for claim_id in payouts]
    return problems


def _receivables(session: Session, outstanding_by_plan: dict[str, int]) -> list[str]:
    """What the ledger says members still owe equals the charges not collected, per plan
    (added up by the cycles' own checks, so the charges are read once)."""
    problems = []
    for plan in session.exec(select(SharingCycle.plan).distinct()).all():
        account = f"receivable:{plan}"
        debited = session.exec(
            select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
                LedgerEntry.debit == account
            )
        ).one()
        credited = session.exec(
            select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
                LedgerEntry.credit == account
            )
        ).one()
        outstanding = outstanding_by_plan.get(plan, 0)
        if debited - credited != outstanding:
            problems.append(
                f"{plan}: the ledger's receivable is {debited - credited} fen "
                f"but {outstanding} fen of charges are uncollected"
            )
    return problems


def claim_counts(session: Session) -> dict[str, int]:
    rows = session.exec(select(Claim.state, func.count()).group_by(Claim.state)).all()
    return dict(sorted(rows))


# Steps a redelivered or concurrent message must never take twice on one claim. (Approved to
# scheduled may come twice: a case upheld against on objection can be approved again by a jury.)
ONCE = [
    (State.RECEIVED, State.UNDER_REVIEW),  # accepted
    (State.RECEIVED, State.REJECTED),  # refused at intake
    (State.UNDER_REVIEW, State.APPROVED),  # reviewed
    (State.UNDER_REVIEW, State.REJECTED),
    (State.UNDER_REVIEW, State.NEEDS_REVIEW),
    (State.ANNOUNCED, State.SETTLED),  # shared out
    (State.SETTLED, State.PAID),  # paid
]


def _claims_moved_once(session: Session) -> list[str]:
    """Each step taken once per claim, and each claim's state the one its history ends in."""
    pairs = [(col(ClaimEvent.from_state) == a) & (col(ClaimEvent.to_state) == b) for a, b in ONCE]
    twice = session.exec(
        select(ClaimEvent.claim_id, ClaimEvent.from_state, ClaimEvent.to_state, func.count())
        .where(or_(*pairs))
        .group_by(ClaimEvent.claim_id, ClaimEvent.from_state, ClaimEvent.to_state)
        .having(func.count() > 1)
    ).all()
    problems = [f"claim {c}: {a} -> {b} happened {n} times" for c, a, b, n in twice]
    last = (
        select(ClaimEvent.claim_id, func.max(ClaimEvent.id).label("event_id"))
        .group_by(ClaimEvent.claim_id)
        .subquery()
    )
    disagree = session.exec(
        select(Claim.id, Claim.state, ClaimEvent.to_state)
        .join(last, last.c.claim_id == Claim.id)
        .join(ClaimEvent, ClaimEvent.id == last.c.event_id)
        .where(ClaimEvent.to_state != Claim.state)
    ).all()
    problems += [f"claim {c}: is {s} but its history ends in {e}" for c, s, e in disagree]
    return problems


def _members_paid_twice(session: Session) -> list[str]:
    """One payout per member per plan: any member with two settled or paid claims."""
    rows = session.exec(
        select(Claim.plan, Claim.member_id, func.count())
        .where(col(Claim.state).in_([State.SETTLED, State.PAID]))
        .group_by(Claim.plan, Claim.member_id)
        .having(func.count() > 1)
    ).all()
    return [f"{plan}: member id {member} has {n} settled claims" for plan, member, n in rows]


def _expecter(problems: list[str]):
    """expect(label, stored, actual): note a figure the books and the rows disagree on."""

    def expect(label: str, stored: int, actual: int) -> None:
        if stored != actual:
            problems.append(f"{label}: books say {stored}, rows say {actual}")

    return expect


def _check_cycle(
    session: Session, cycle: SharingCycle, surplus_carried: int
) -> tuple[list[str], int]:
    """The cycle's problems, and what of its charges is still uncollected."""
    problems: list[str] = []
    expect = _expecter(problems)

    plan = get_plan(cycle.plan)
    amounts = session.exec(
        select(Claim.amount_fen).where(
            Claim.cycle_id == cycle.id, col(Claim.state).in_([State.SETTLED, State.PAID])
        )
    ).all()
    sharing = session.exec(
        select(func.count()).where(
            Member.plan == cycle.plan,
            shares_at(cycle.cutoff_at),
            col(Member.id).between(cycle.first_member_id, cycle.last_member_id),
        )
    ).one()
    expect("members at the cut-off", cycle.sharing_members, sharing)
    # The share itself, recomputed by the same pure formula from the rows.
    figures = compute_share(
        list(amounts), sharing, surplus_carried, plan.fee_rate_bp, plan.per_patient_cap_fen
    )
    expect("share", cycle.share_fen, figures.share_fen)
    expect("surplus carried out", cycle.surplus_out_fen, figures.surplus_out_fen)
    expect("per-patient-cap subsidy", cycle.cap_subsidy_fen, figures.cap_subsidy_fen)
    expect("cases", cycle.cases, len(amounts))
    expect("aid", cycle.aid_fen, sum(amounts))
    expect("fee", cycle.fee_fen, sum(apply_rate(a, plan.fee_rate_bp) for a in amounts))
    expect("surplus carried in", cycle.surplus_in_fen, surplus_carried)
    if cycle.charges_archived_at is None:
        found, collected, outstanding = _check_charges(session, cycle)
        problems += found
    else:  # audited clean and fully collected when its partition was detached
        collected, outstanding = cycle.charged_fen, 0
    if cycle.share_fen > plan.per_patient_cap_fen * cycle.cases:
        problems.append("the share is above the per-patient cap times the cases")
    funds_in = cycle.charged_fen + cycle.subsidy_fen + cycle.surplus_in_fen
    funds_out = cycle.aid_fen + cycle.fee_fen + cycle.surplus_out_fen
    if funds_in != funds_out:
        problems.append(
            f"charges + subsidy + surplus in = {funds_in} but aid + fee + surplus out = {funds_out}"
        )
    problems += _check_ledger(session, cycle, collected)
    return problems, outstanding


def _check_charges(session: Session, cycle: SharingCycle) -> tuple[list[str], int, int]:
    """The cycle's charge rows against its books: one per sharing member, equal, collected once.
    One pass over the rows; returns the problems, what was collected and what is outstanding."""
    problems: list[str] = []
    expect = _expecter(problems)

    rows, charged, subsidy, top, low, odd, collected = session.exec(
        select(
            func.count(),
            func.coalesce(func.sum(Charge.amount_fen), 0),
            func.coalesce(func.sum(Charge.subsidy_fen), 0),
            func.coalesce(func.max(Charge.amount_fen + Charge.subsidy_fen), 0),
            func.coalesce(func.min(Charge.amount_fen + Charge.subsidy_fen), 0),
            func.count().filter(
                Charge.collected_fen != 0, Charge.collected_fen != Charge.amount_fen
            ),
            func.coalesce(func.sum(Charge.collected_fen), 0),
        ).where(Charge.cycle_id == cycle.id)
    ).one()
    if rows and low != top:
        problems.append(f"members were charged unequal shares ({low} to {top} fen)")
    if odd:
        problems.append(f"{odd} charges were collected in part or more than once")
    if cycle.arrears_settled_at is not None:
        unanswered = session.exec(
            select(func.count()).where(
                Charge.cycle_id == cycle.id,
                col(Charge.debit_status).in_([DebitStatus.DUE, DebitStatus.SENDING]),
            )
        ).one()
        if unanswered:
            problems.append(f"{unanswered} debits have no answer after the window closed")
    if cycle.share_fen:
        expect("charge rows", cycle.sharing_members, rows)
    expect("charged", cycle.charged_fen, charged)
    expect("annual-cap subsidy", cycle.annual_cap_subsidy_fen, subsidy)
    if top > cycle.share_fen:
        problems.append(f"a member was charged {top} fen, above the share of {cycle.share_fen}")
    return problems, collected, charged - collected


def _check_ledger(session: Session, cycle: SharingCycle, collected: int) -> list[str]:
    entries = {
        e.key: e
        for e in session.exec(select(LedgerEntry).where(LedgerEntry.cycle_id == cycle.id)).all()
    }
    problems = []
    # Collected money: every debit the provider confirmed, booked from the receivable to cash.
    debits = [e for k, e in list(entries.items()) if k.startswith("debits:")]
    for entry in debits:
        entries.pop(entry.key)
        if (entry.debit, entry.credit) != (f"cash:{cycle.plan}", f"receivable:{cycle.plan}"):
            problems.append(f"ledger {entry.key}: books {entry.credit} -> {entry.debit}")
    booked = sum(e.amount_fen for e in debits)
    if booked != collected:
        problems.append(f"collected: ledger says {booked}, charges say {collected}")
    pool_balance = 0
    for name, debit, credit, amount in ledger_movements(cycle):
        entry = entries.pop(f"cycle:{cycle.id}:{name}", None)
        booked = entry.amount_fen if entry else 0
        if booked != amount or (entry and (entry.debit, entry.credit) != (debit, credit)):
            problems.append(f"ledger {name}: booked {booked}, expected {amount}")
        if entry:
            pool_balance += booked if entry.debit.startswith("pool:") else -booked
    if pool_balance:
        problems.append(f"the cycle's pool ends at {pool_balance} fen, not zero")
    problems += [f"unexpected ledger entry {key}" for key in entries]
    return problems
