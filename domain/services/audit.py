"""The audit: every closed cycle's books recomputed from the rows, to the fen, and every ledger
account checked against what its name says it holds."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import String, case, cast, literal
from sqlmodel import Session, col, func, or_, select

from domain import accounts
from domain import review as review_rules
from domain.claims import PAYABLE, Reason, State
from domain.investigations import Finding, against_findings
from domain.models import (
    Charge,
    Claim,
    ClaimEvent,
    DebitStatus,
    Investigation,
    LedgerEntry,
    Member,
    Objection,
    Payout,
    PayoutStatus,
    SharingCycle,
)
from domain.money import apply_rate
from domain.plans import get_plan, load_plans
from domain.services import investigations, winddown
from domain.services.claims import MAX_ATTEMPTS
from domain.services.cycles import CycleStatus, ledger_movements
from domain.services.members import shares_at
from domain.services.payments import Account, waiting_period_rejections
from domain.services.proofs import (
    ProofKeys,
    closed_before_proofs,
    log_problems,
    recomputed,
    rows_kept,
)
from domain.sharing import compute_share
from domain.winddown import HAS_ENDED


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
    # Every ledger account's balance on its normal side (assets as debits, the rest as credits).
    accounts: dict[str, int] = field(default_factory=dict)

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


def audit(session: Session, now: datetime | None = None, *, keys: ProofKeys) -> AuditReport:
    """Audit the books and the proofs (recomputed from the rows with the keys' secret, heads
    checked against the keys' signer); with `now`, also list the settled cases not paid
    within the plan's payout days."""
    cycles = session.exec(
        select(SharingCycle)
        .where(SharingCycle.status == CycleStatus.CLOSED)
        .order_by(col(SharingCycle.plan), col(SharingCycle.announce_on))
    ).all()
    surplus_by_plan: dict[str, int] = {}
    outstanding_by_plan: dict[str, int] = {}
    report = AuditReport(
        [],
        _members_paid_twice(session)
        + _payouts(session)
        + _claims_moved_once(session)
        + _four_eyes(session)
        + investigations.stranded(session)
        + _waiting_period_refunds(session)
        + _objections_of_decided_cases(session)
        + _entries_of_no_cycle(session)
        + _wind_downs(session)
        + log_problems(session, keys.signer.public_key().public_bytes_raw())
        + (_unpaid_past_deadline(session, now) if now else []),
    )
    report.claims = claim_counts(session)
    paying = _cycles_paying(session)
    for cycle in cycles:
        result = CycleAudit(cycle.plan, cycle.id, str(cycle.announce_on))
        result.problems, outstanding = _check_cycle(
            session, cycle, surplus_by_plan.get(cycle.plan, 0), paying
        )
        result.problems += recomputed(session, cycle, keys.secret)
        if closed_before_proofs(session, cycle):
            report.attention.append(
                f"{cycle.plan} cycle {cycle.id} closed before proofs were built: "
                "its members have none"
            )
        surplus_by_plan[cycle.plan] = cycle.surplus_out_fen
        outstanding_by_plan[cycle.plan] = outstanding_by_plan.get(cycle.plan, 0) + outstanding
        report.cycles.append(result)
    report.general += _receivables(session, outstanding_by_plan)
    balances = _balances(session)
    report.accounts = {name: accounts.natural_balance(name, b) for name, b in balances.items()}
    report.general += _accounts(session, balances, cycles, paying) + _cash_never_negative(session)
    report.attention += _attention(session)
    return report


def _wind_downs(session: Session) -> list[str]:
    """Each plan winding down keeps its promises: no one joined from the announcement, no
    member was charged for a cycle the platform pays, claims after the end were judged by the
    tail's rule, every share is refunded when it said so, and settled means nothing is left."""
    problems = []
    for plan, rules in winddown.wind_downs(session).items():
        joined = session.exec(
            select(func.count()).where(Member.plan == plan, Member.joined_at >= rules.announce_at)
        ).one()
        if joined:
            problems.append(f"{plan}: {joined} members joined after the wind-down was announced")
        charged = session.exec(
            select(func.count(), func.coalesce(func.sum(Charge.amount_fen), 0))
            .join(SharingCycle, col(SharingCycle.id) == Charge.cycle_id)
            .where(
                SharingCycle.plan == plan,
                col(SharingCycle.charge_on) >= rules.sharing_stops_on,
                Charge.amount_fen > 0,
            )
        ).one()
        if charged[0]:
            problems.append(
                f"{plan}: {charged[0]} members were charged {charged[1]} fen for cycles charged "
                f"on or after {rules.sharing_stops_on}, which the platform pays"
            )
        if winddown.stage_of(session, plan) in HAS_ENDED:
            outlasting = session.exec(
                select(func.count()).where(
                    Member.plan == plan,
                    or_(col(Member.exited_at).is_(None), col(Member.exited_at) > rules.end_at),
                )
            ).one()
            if outlasting:
                problems.append(f"{plan}: {outlasting} memberships outlast the plan's end")
        problems += _tail_claims(session, rules)
        problems += _refunds_of_all_shares(session, plan, rules.end_at)
        problems += _settled_with_nothing_owed(session, plan)
    return problems


def _settled_with_nothing_owed(session: Session, plan: str) -> list[str]:
    """A settled plan owes nothing it owed when it settled (a refund of arrears paid since is
    made then, and is in flight until paid)."""
    settled = [e.at for e in winddown.events(session, plan) if e.kind == winddown.Stage.SETTLED]
    if not settled:
        return []
    owed = winddown.open_obligations(session, plan, made_before=settled[0])
    return [f"{plan} is settled but still owes: {owed}"] if owed else []


def _refunds_of_all_shares(session: Session, plan: str, end_at: datetime) -> list[str]:
    """A plan that refunds every share: from its end, each share collected (before the end; once
    settled, ever) has its refund under the key that makes it once, of the amount collected, to
    the account that paid it; and no refund of the plan is of anything else."""
    stage = winddown.stage_of(session, plan)
    if not winddown.refunds_all(session, plan) or stage not in HAS_ENDED:
        return []
    key = (
        literal("refund:")
        + cast(Charge.cycle_id, String)
        + literal(":")
        + cast(Charge.member_id, String)
    )
    exact = (
        (Payout.member_id == Charge.member_id)
        & (Payout.amount_fen == Charge.collected_fen)
        & (Payout.account == Account.member_ref)
    )
    collected = [
        Member.plan == plan,
        Charge.debit_status == DebitStatus.COLLECTED,
        Charge.collected_fen > 0,
    ]
    due = [] if stage == winddown.Stage.SETTLED else [col(Charge.debited_at) < end_at]
    missing, matched = session.exec(
        select(
            func.count().filter(*due, ~func.coalesce(exact, False)),
            func.count(Payout.id).filter(exact),
        )
        .select_from(Charge)
        .join(Member, col(Member.id) == Charge.member_id)
        .join(Account, col(Account.id) == Charge.account_id)
        .outerjoin(Payout, Payout.key == key)
        .where(*collected)
    ).one()
    refunds = session.exec(
        select(func.count()).where(Payout.plan == plan, Payout.purpose == "refund")
    ).one()
    problems = []
    if missing:
        problems.append(
            f"{plan}: {missing} shares paid have no refund of their amount to the account that "
            "paid them, as all must"
        )
    if refunds > matched:
        problems.append(f"{plan}: {refunds - matched} refunds are of no share collected")
    return problems


def _tail_claims(session: Session, rules) -> list[str]:
    """Claims received after the end: outside the tail none is approved or goes on to be paid
    (one still in intake or review is not yet judged), and none inside it is rejected as
    outside."""
    after = session.exec(
        select(Claim.submission_id, Claim.diagnosed_on, Claim.received_at, Claim.state)
        .add_columns(Claim.reason_code)
        .where(Claim.plan == rules.plan, Claim.received_at >= rules.end_at)
        .where(col(Claim.diagnosed_on).is_not(None))
    ).all()
    problems = []
    for ref, diagnosed_on, received_at, state, reason in after:
        outside = rules.tail_refusal(diagnosed_on, received_at) is not None
        if outside and state in PAYABLE:
            problems.append(f"{rules.plan}: claim {ref} is outside the tail but is {state}")
        elif not outside and reason == Reason.AFTER_PLAN_END:
            problems.append(f"{rules.plan}: claim {ref} is in the tail but was rejected as not")
    return problems


def _attention(session: Session) -> list[str]:
    refused = session.exec(
        select(Payout.key, Payout.reason).where(Payout.status == PayoutStatus.FAILED)
    ).all()
    stuck = session.exec(
        select(Claim.submission_id, Claim.state).where(Claim.attempts > MAX_ATTEMPTS)
    ).all()
    late = session.exec(
        select(Charge.debit_key).where(
            Charge.debit_status == DebitStatus.SENDING, col(Charge.debit_key).startswith("settle:")
        )
    ).all()
    return (
        [f"payout {key} refused: {reason}" for key, reason in refused]
        + [
            f"late payment {key} has no answer: `huzhu members settle` asks again under its key"
            for key in late
        ]
        + [f"claim {ref}: its {state} step failed {MAX_ATTEMPTS} times" for ref, state in stuck]
    )


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


def _four_eyes(session: Session) -> list[str]:
    """No rejection by a reviewer, no approval of the plan's threshold or more, and no decision
    against an investigation's findings rests on one person: each went through
    awaiting_second_review, and was made final by another reviewer."""
    decided = [State.APPROVED, State.REJECTED]
    steps = session.exec(
        select(ClaimEvent.claim_id, ClaimEvent.from_state, ClaimEvent.to_state, ClaimEvent.actor)
        .add_columns(ClaimEvent.at, Claim.submission_id, Claim.plan, Claim.amount_fen)
        .join(Claim, col(Claim.id) == ClaimEvent.claim_id)
        .where(col(ClaimEvent.actor).like("reviewer:%"))
        .where(col(ClaimEvent.from_state).in_([State.NEEDS_REVIEW, State.AWAITING_SECOND_REVIEW]))
        .where(col(ClaimEvent.to_state).in_([*decided, State.AWAITING_SECOND_REVIEW]))
        .order_by(col(ClaimEvent.claim_id), col(ClaimEvent.id))
    ).all()
    findings = _findings(session)
    problems, first_of = [], {}
    for claim_id, was, to, actor, at, ref, plan, amount in steps:
        approve = to == State.APPROVED
        if was == to:
            continue  # taken, handed back: a note, not a decision
        found = _found_by(findings.get(claim_id, []), at)
        if actor.removeprefix("reviewer:") in {who for _, who in found}:
            problems.append(f"claim {ref}: {actor} decided a claim they investigated")
        if (was, to) == (State.NEEDS_REVIEW, State.AWAITING_SECOND_REVIEW):
            first_of[claim_id] = actor
        elif was == State.AWAITING_SECOND_REVIEW and first_of.get(claim_id) == actor:
            problems.append(f"claim {ref}: {actor} gave both decisions (four eyes)")
        elif (
            was == State.NEEDS_REVIEW
            and plan
            and (
                review_rules.needs_second_review(approve, amount, get_plan(plan))
                or against_findings(approve, (finding for finding, _ in found))
            )
        ):
            problems.append(f"claim {ref}: {to} by {actor} alone, without a second reviewer")
    return problems + _re_reviews_against_findings(session, findings)


Found = tuple[datetime, Finding, str]  # when the findings were filed, what, and by whom


def _findings(session: Session) -> dict[int, list[Found]]:
    """Each claim's closed investigations' findings, in the order they were filed."""
    rows = session.exec(
        select(
            Investigation.claim_id,
            Investigation.closed_at,
            Investigation.finding,
            Investigation.investigator,
        )
        .where(col(Investigation.closed_at).is_not(None), col(Investigation.finding).is_not(None))
        .order_by(col(Investigation.closed_at))
    ).all()
    found: dict[int, list[Found]] = {}
    for claim_id, closed_at, finding, investigator in rows:
        found.setdefault(claim_id, []).append((closed_at, Finding(finding), investigator or ""))
    return found


def _found_by(findings: list[Found], at: datetime) -> list[tuple[Finding, str]]:
    """The findings a decision at `at` rested on: every one filed before it."""
    return [(finding, who) for closed_at, finding, who in findings if closed_at <= at]


def _re_reviews_against_findings(session: Session, findings: dict[int, list[Found]]) -> list[str]:
    """An objection's re-review against what the case's investigations found was given by two
    reviewers, neither its investigator. (Objections settled along with another, or by a jury
    or a close, name an actor, `reviewer:NAME` or the like, and are not re-reviews.)"""
    decided = session.exec(
        select(Objection, Claim.submission_id)
        .join(Claim, col(Claim.id) == Objection.claim_id)
        .where(col(Objection.status).in_(["upheld", "dismissed"]))
        .where(col(Objection.claim_id).in_(list(findings)))
        .where(~col(Objection.decided_by).contains(":"))
    ).all()
    problems = []
    for objection, ref in decided:
        assert objection.decided_at is not None
        found = _found_by(findings[objection.claim_id], objection.decided_at)
        who = objection.decided_by
        if who in {investigator for _, investigator in found}:
            problems.append(f"claim {ref}: {who} re-reviewed a case they investigated")
        against = against_findings(objection.status == "dismissed", (f for f, _ in found))
        if against and objection.first_by in (None, who):
            problems.append(
                f"claim {ref}: objection {objection.id} {objection.status} by {who} alone, "
                "against the investigation's findings"
            )
    return problems


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
    session: Session, cycle: SharingCycle, surplus_carried: int, paying: set[int]
) -> tuple[list[str], int]:
    """The cycle's problems, and what of its charges is still uncollected (`paying`: the cycles
    whose patients are being paid)."""
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
        list(amounts),
        sharing,
        surplus_carried,
        plan.fee_rate_bp,
        plan.per_patient_cap_fen,
        platform_pays=winddown.platform_pays(session, cycle.plan, cycle.charge_on),
    )
    expect("share", cycle.share_fen, figures.share_fen)
    expect("the platform's share", cycle.platform_share_fen, figures.platform_share_fen)
    expect("surplus carried out", cycle.surplus_out_fen, figures.surplus_out_fen)
    expect("per-patient-cap subsidy", cycle.cap_subsidy_fen, figures.cap_subsidy_fen)
    expect("cases", cycle.cases, len(amounts))
    expect("aid", cycle.aid_fen, sum(amounts))
    expect("fee", cycle.fee_fen, sum(apply_rate(a, plan.fee_rate_bp) for a in amounts))
    expect("surplus carried in", cycle.surplus_in_fen, surplus_carried)
    if rows_kept(session, cycle):
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
    problems += _check_ledger(session, cycle, collected, paying)
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
        # A member's own late payment (settle:…) may wait for its answer after the window;
        # it is listed for a person (_attention), not an imbalance.
        unanswered = session.exec(
            select(func.count()).where(
                Charge.cycle_id == cycle.id,
                col(Charge.debit_status).in_([DebitStatus.DUE, DebitStatus.SENDING]),
                or_(col(Charge.debit_key).is_(None), ~col(Charge.debit_key).startswith("settle:")),
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


def _check_ledger(
    session: Session, cycle: SharingCycle, collected: int, paying: set[int]
) -> list[str]:
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
    problems += _cycle_payouts(session, cycle, entries, paying)
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


def _cycle_payouts(
    session: Session, cycle: SharingCycle, entries: dict, paying: set[int]
) -> list[str]:
    """The cycle's money out (taken from `entries`): the subsidy paid in by the platform, the
    platform's funding of what cash lacked, and the patients' payouts, each booked the right
    way; what the cycle still owes its patients is exactly its settled, unpaid cases."""
    problems = []
    plan, subsidy_key = cycle.plan, f"funding:{cycle.id}:subsidy"
    paid_out = 0
    for key in [k for k in entries if k.startswith(("funding:", "payout:"))]:
        entry = entries.pop(key)
        if key == subsidy_key:
            shape = (accounts.cash(plan), accounts.subsidy_due(plan))
        elif key.startswith("funding:"):
            shape = (accounts.cash(plan), accounts.platform_funding(plan))
        else:
            shape = (accounts.aid_payable(plan), accounts.cash(plan))
            paid_out += entry.amount_fen
        if (entry.debit, entry.credit) != shape:
            problems.append(
                f"ledger {key}: books {entry.credit} -> {entry.debit}, not {shape[1]} -> {shape[0]}"
            )
    funded = session.exec(
        select(LedgerEntry.amount_fen).where(LedgerEntry.key == subsidy_key)
    ).first()
    if cycle.id in paying and cycle.subsidy_fen and funded != cycle.subsidy_fen:
        problems.append(
            f"the platform paid {funded or 0} fen of its {cycle.subsidy_fen} fen subsidy into "
            "cash before the patients were paid"
        )
    unpaid = session.exec(
        select(func.coalesce(func.sum(Claim.amount_fen), 0)).where(
            Claim.cycle_id == cycle.id, Claim.state == State.SETTLED
        )
    ).one()
    if cycle.aid_fen - paid_out != unpaid:
        problems.append(
            f"aid payable: {cycle.aid_fen} fen of aid less {paid_out} fen paid out leaves "
            f"{cycle.aid_fen - paid_out}, but the unpaid settled cases come to {unpaid}"
        )
    return problems


def _balances(session: Session) -> dict[str, int]:
    """Every account's debits less its credits."""
    balances: dict[str, int] = {}
    for side, sign in ((LedgerEntry.debit, 1), (LedgerEntry.credit, -1)):
        rows = session.exec(select(side, func.sum(LedgerEntry.amount_fen)).group_by(side)).all()
        for name, amount in rows:
            balances[name] = balances.get(name, 0) + sign * int(amount)
    return dict(sorted(balances.items()))


def _accounts(session: Session, balances: dict[str, int], cycles, paying: set[int]) -> list[str]:
    """Each account of each plan against what the rows say it must hold."""
    problems = []
    plans = set(load_plans())
    for name in balances:
        account = accounts.account_of(name)
        if account is None or name.split(":")[1] not in plans:
            problems.append(f"ledger account {name} is not in the chart of accounts")
    for plan in sorted(plans):
        mine = [c for c in cycles if c.plan == plan]

        def expect(name: str, rows: int, what: str) -> None:
            booked = accounts.natural_balance(name, balances.get(name, 0))
            if booked != rows:
                problems.append(f"{name} stands at {booked} fen, but {what} come to {rows}")

        paid = dict(
            session.exec(
                select(Payout.purpose, func.sum(Payout.amount_fen))
                .where(Payout.plan == plan, Payout.status == PayoutStatus.PAID)
                .group_by(Payout.purpose)
            ).all()
        )
        funding = session.exec(
            select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
                LedgerEntry.debit == accounts.cash(plan),
                col(LedgerEntry.key).startswith("funding:"),
            )
        ).one()
        out = int(paid.get("aid", 0)) + int(paid.get("refund", 0))
        expect(
            accounts.cash(plan),
            _collected(session, plan) + int(funding) - out,
            "collections + the platform's funding - payouts - refunds",
        )
        unpaid = session.exec(
            select(func.coalesce(func.sum(Claim.amount_fen), 0))
            .join(SharingCycle, col(SharingCycle.id) == Claim.cycle_id)
            .where(
                Claim.state == State.SETTLED,
                SharingCycle.plan == plan,
                SharingCycle.status == CycleStatus.CLOSED,
            )
        ).one()
        expect(accounts.aid_payable(plan), int(unpaid), "the settled cases not yet paid")
        expect(accounts.refunds(plan), int(paid.get("refund", 0)), "the refunds paid")
        expect(accounts.fee_income(plan), sum(c.fee_fen for c in mine), "the cycles' fees")
        expect(
            accounts.surplus(plan),
            mine[-1].surplus_out_fen if mine else 0,
            "the surplus the last closed cycle carried out",
        )
        expect(
            accounts.subsidy_due(plan),
            sum(c.subsidy_fen for c in mine if c.id not in paying),
            "the subsidies of cycles whose patients are not yet being paid",
        )
        if balances.get(accounts.platform_funding(plan), 0) > 0:
            problems.append(f"{accounts.platform_funding(plan)} was debited: money went back")
    return problems


def _collected(session: Session, plan: str) -> int:
    """What members paid into the plan: the collected charges, and the archived cycles' charges
    (fully collected when they were archived)."""
    live = session.exec(
        select(func.coalesce(func.sum(Charge.collected_fen), 0))
        .join(SharingCycle, col(SharingCycle.id) == Charge.cycle_id)
        .where(SharingCycle.plan == plan, col(SharingCycle.charges_archived_at).is_(None))
    ).one()
    archived = session.exec(
        select(func.coalesce(func.sum(SharingCycle.charged_fen), 0)).where(
            SharingCycle.plan == plan, col(SharingCycle.charges_archived_at).is_not(None)
        )
    ).one()
    return int(live) + int(archived)


def _cycles_paying(session: Session) -> set[int]:
    """The cycles whose patients are being paid: they have payout rows."""
    paying = select(Claim.cycle_id).join(Payout, col(Payout.claim_id) == Claim.id).distinct()
    return {cycle_id for cycle_id in session.exec(paying) if cycle_id is not None}


def _cash_never_negative(session: Session) -> list[str]:
    """Cash, entry by entry in the order they were made, never below zero: nothing was paid
    out of money that was not there."""
    is_debit = col(LedgerEntry.debit).startswith("cash:")
    account = case((is_debit, LedgerEntry.debit), else_=LedgerEntry.credit)
    signed = case((is_debit, LedgerEntry.amount_fen), else_=-LedgerEntry.amount_fen)
    running = (
        select(
            account.label("account"),
            func.sum(signed).over(partition_by=account, order_by=LedgerEntry.id).label("balance"),
        )
        .where(or_(is_debit, col(LedgerEntry.credit).startswith("cash:")))
        .subquery()
    )
    lows = session.exec(
        select(running.c.account, func.min(running.c.balance))
        .group_by(running.c.account)
        .having(func.min(running.c.balance) < 0)
    ).all()
    return [f"{name} went down to {int(low)} fen" for name, low in lows]


def _waiting_period_refunds(session: Session) -> list[str]:
    """Every share collected from a member whose claim was rejected for a waiting-period illness
    is refunded once, for what was collected; and no one else is refunded."""
    rejected = waiting_period_rejections()
    refund_key = (
        literal("refund:")
        + cast(Charge.cycle_id, String)
        + literal(":")
        + cast(Charge.member_id, String)
    )
    missing = session.exec(
        select(Charge.cycle_id, Charge.member_id, Charge.collected_fen, Payout.amount_fen)
        .outerjoin(Payout, col(Payout.key) == refund_key)
        .where(
            col(Charge.member_id).in_(rejected),
            Charge.collected_fen > 0,
            or_(col(Payout.id).is_(None), Payout.amount_fen != Charge.collected_fen),
        )
    ).all()
    problems = [
        f"member id {member}: {collected} fen collected in cycle {cycle} after a waiting-period "
        f"illness, refunded {refunded or 0}"
        for cycle, member, collected, refunded in missing
    ]
    # A plan that ended refunding every share owes them all (checked by _wind_downs).
    refunding_all = [p for p, r in winddown.wind_downs(session).items() if r.refund_all_shares]
    unowed = session.exec(
        select(Payout.key).where(
            Payout.purpose == "refund",
            col(Payout.member_id).not_in(rejected),
            col(Payout.plan).not_in(refunding_all),
        )
    ).all()
    return problems + [f"refund {key} has no waiting-period rejection behind it" for key in unowed]


def _objections_of_decided_cases(session: Session) -> list[str]:
    """An objection still open only on a case still before the members: announced, objected, or
    moved to the next cycle; never one decided since it was filed."""
    stale = session.exec(
        select(Objection.id, Claim.submission_id, Claim.state)
        .join(Claim, col(Claim.id) == Objection.claim_id)
        .where(
            Objection.status == "open",
            or_(
                col(Claim.state).not_in([State.ANNOUNCED, State.OBJECTED, State.SCHEDULED]),
                col(Claim.decided_at) > Objection.filed_at,
            ),
        )
    ).all()
    return [
        f"objection {objection} is still open on claim {ref}, which was decided since ({state})"
        for objection, ref, state in stale
    ]


def _unpaid_past_deadline(session: Session, now: datetime) -> list[str]:
    """Settled cases of closed cycles not paid within the plan's payout days of the close. A
    payout the provider refused is not counted here: it is listed for a person to act on."""
    refused = select(Payout.claim_id).where(
        Payout.status == PayoutStatus.FAILED, col(Payout.claim_id).is_not(None)
    )
    rows = session.exec(
        select(Claim.submission_id, SharingCycle.plan, SharingCycle.closed_at)
        .join(SharingCycle, col(SharingCycle.id) == Claim.cycle_id)
        .where(
            Claim.state == State.SETTLED,
            SharingCycle.status == CycleStatus.CLOSED,
            col(Claim.id).not_in(refused),
        )
    ).all()
    days = {code: plan.payout_days for code, plan in load_plans().items()}
    refunds = session.exec(
        select(Payout.key, Payout.plan, Payout.created_at).where(
            Payout.purpose == "refund", Payout.status == PayoutStatus.PENDING
        )
    ).all()
    return [
        f"claim {ref} was settled at {closed_at.isoformat()} and is still unpaid "
        f"after {days[plan]} days"
        for ref, plan, closed_at in rows
        if closed_at and now > closed_at + timedelta(days=days[plan])
    ] + [
        f"refund {key} is owed since {owed_since.isoformat()} and still unpaid "
        f"after {days[plan]} days"
        for key, plan, owed_since in refunds
        if now > owed_since + timedelta(days=days[plan])
    ]


def _entries_of_no_cycle(session: Session) -> list[str]:
    """Entries that belong to no cycle are refunds and the platform's funding of them only,
    each booked the right way."""
    entries = session.exec(select(LedgerEntry).where(col(LedgerEntry.cycle_id).is_(None))).all()
    problems = []
    for entry in entries:
        plan = entry.debit.partition(":")[2] or entry.credit.partition(":")[2]
        if entry.key.startswith("payout:refund:"):
            shape = (accounts.refunds(plan), accounts.cash(plan))
        elif entry.key.startswith("funding:refund:"):
            shape = (accounts.cash(plan), accounts.platform_funding(plan))
        else:
            problems.append(f"ledger {entry.key} belongs to no cycle")
            continue
        if (entry.debit, entry.credit) != shape:
            problems.append(
                f"ledger {entry.key}: books {entry.credit} -> {entry.debit}, "
                f"not {shape[1]} -> {shape[0]}"
            )
    return problems
