"""The books stay true whatever members, reviewers, providers and the queue do, in any order.

A Hypothesis state machine on the embedded default (SQLite) lives through several sharing
cycles: members join, leave and claim (approved by the records, rejected for an undisclosed
condition, or inside the waiting period); members object and reviewers decide; juries overturn;
cycles publish and close (chunks and the finalise redelivered, the payout message lost); debits
fail, answers are lost and arrears are settled; payouts fail, succeed and are answered twice.
After every step the audit must find nothing, at that step's moment.

The beat's chores run as time moves on, as they do on a live system every minute: the sweep of
settled cases without payouts, and the end of each collection window at its deadline.
"""

import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlmodel import col, select

from broker.database import engine
from broker.proofkeys import proof_keys
from domain.calendar import charge_day, next_announcement_day, start_of_day
from domain.db import transaction
from domain.models import Claim, JuryCase, Member, Objection, Payout
from domain.plans import get_plan
from domain.records import Condition, Evidence, Reply
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import disputes, payments
from domain.services import members as member_service
from tests.integration.fixtures import make_stack
from tests.integration.scenario import ANNOUNCE_ON, CRITICAL, DIAGNOSED, NOW_UTC, enrol, member
from tests.integration.test_disputes import juror

OLD = [f"M{n}" for n in range(8)]  # members long past their waiting period
NEW = ["N0", "N1"]  # joined 20 days ago: every illness of theirs is inside the waiting period
JURORS = ["J1", "J2", "J3", "J4"]
PEOPLE = OLD + NEW + JURORS
LEAVERS = ["M6", "M7", "N1"]  # a few may leave; the rest stay to share and claim
HOUR = timedelta(hours=1)
REACHED: Counter[str] = Counter()  # what the examples got to, over the run
PAYOUT_DAYS = get_plan(CRITICAL).payout_days


class Books(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="huzhu-books-"))
        make_stack("sqlite", self.folder, "", "")
        enrol(
            [member(ref, CRITICAL, 30 + n, joined_days_ago=400) for n, ref in enumerate(OLD)]
            + [member(ref, CRITICAL, 31, joined_days_ago=20) for ref in NEW]
            + [juror(ref) for ref in JURORS]
        )
        self.now = NOW_UTC
        self.cycle_on = ANNOUNCE_ON  # the announcement day of the next cycle to publish
        self.published = False
        self.open_windows: list[tuple[int, datetime]] = []  # (cycle, its retry deadline)
        self.claimed: set[str] = set()

    def teardown(self) -> None:
        with transaction(engine()) as session:
            REACHED.update(f"claim {state}" for state in session.exec(select(Claim.state)))
            REACHED.update(f"{o.status} objection" for o in session.exec(select(Objection)))
            REACHED.update(f"{p.purpose} {p.status}" for p in session.exec(select(Payout)))
            REACHED.update(f"jury approved={j.approved}" for j in session.exec(select(JuryCase)))
            REACHED.update(
                f"member left: {r}" for r in session.exec(select(Member.exit_reason)) if r
            )
        shutil.rmtree(self.folder, ignore_errors=True)

    @initialize()
    def a_first_cycle_paid_by_everyone(self) -> None:
        """Every example starts with money in the books: one case shared and collected, so
        a new member's later waiting-period claim has shares to refund."""
        self.claim("M0", "records")
        self.publish()
        self.close(redeliver=False, lose_payouts=False)
        self.collect(failing=set(), lose_answer=False)

    # --- time, and the beat's chores as it passes ---

    def next_boundary(self) -> datetime:
        day = charge_day(self.cycle_on) if self.published else self.cycle_on
        return start_of_day(day)

    def advance(self, to: datetime) -> None:
        for cycle_id, deadline in sorted(self.open_windows, key=lambda w: w[1]):
            if deadline <= to:
                self.now = max(self.now, deadline)
                with transaction(engine()) as session:
                    payments.close_window(session, cycle_id, deadline)
                self.open_windows.remove((cycle_id, deadline))
        self.sweep()
        self.pay_overdue(to)
        self.now = max(self.now, to)

    def pay_overdue(self, to: datetime) -> None:
        """The provider answers in the end: a payout (aid or refund) still pending is paid the
        day before the plan's payout days run out (pay_pending sends it every few minutes
        until then)."""
        due = to - timedelta(days=PAYOUT_DAYS - 1)
        with transaction(engine()) as session:
            pending = session.exec(
                select(Payout.id).where(Payout.status == "pending", Payout.created_at <= due)
            ).all()
        self.pay_out(list(pending), answer="paid", answered_twice=False)

    def room(self, needed: timedelta) -> bool:
        return self.now + needed < self.next_boundary()

    @rule()
    def sweep(self) -> None:
        """The sweep: a closed cycle with settled cases and no payouts gets them."""
        with transaction(engine()) as session:
            unpaid = payments.settled_without_payout(session)
        for cycle_id in unpaid:
            with transaction(engine()) as session:
                payments.create_cycle_payouts(session, cycle_id, self.now)

    # --- members ---

    @rule(ref=st.sampled_from(LEAVERS))
    def leave(self, ref: str) -> None:
        try:
            with transaction(engine()) as session:
                member_service.exit_member(session, CRITICAL, ref, self.now)
        except ValueError:
            pass  # refused (already left, or inside a published cycle): nothing changes

    @precondition(lambda self: self.room(HOUR))
    @rule(ref=st.sampled_from(OLD + NEW), kind=st.sampled_from(["records"] * 3 + ["undisclosed"]))
    def claim(self, ref: str, kind: str) -> None:
        """A claim through intake and the rules; a new member's is inside the waiting period."""
        if ref in self.claimed:
            return
        self.claimed.add(ref)
        self.advance(self.now + HOUR)
        line = (
            f'{{"submission_id": "{ref}", "member_ref": "{ref}", "plan": "{CRITICAL}", '
            f'"icd10": "C73", "diagnosed_on": "{DIAGNOSED}", "hospital": "h", "accident": false}}'
        )
        with transaction(engine()) as session:
            claim_id, _ = claim_service.record_submission(session, line, self.now)
        with transaction(engine()) as session:
            claim_service.accept(session, claim_id, self.now)
        found = [Condition("C73", DIAGNOSED, "active")]
        earlier = [Condition("C73", DIAGNOSED - timedelta(days=900), "resolved")]
        evidence = Evidence(
            Reply.FOUND, diagnosis=found, earlier=earlier if kind == "undisclosed" else []
        )
        with transaction(engine()) as session:
            claim_service.review_claim(session, claim_id, self.now, evidence)
        with transaction(engine()) as session:
            claim_service.schedule(session, claim_id, self.now)

    @precondition(lambda self: self.room(timedelta(hours=26)))
    @rule(pick=st.integers(0, 9))
    def jury(self, pick: int) -> None:
        """A rejected applicant asks a jury, four certified members approve, the count runs."""
        rejected = self.claims_in(["rejected"])
        if not rejected:
            return
        ref = rejected[pick % len(rejected)]
        try:
            with transaction(engine()) as session:
                case = disputes.request_jury(session, ref, self.now)
                case.min_votes = len(JURORS)  # the plan asks 1,000; a small jury, same rule
                session.add(case)
        except disputes.Refused:
            return
        for name in JURORS:
            with transaction(engine()) as session:
                disputes.cast_vote(session, case.id, name, True, self.now + HOUR)
        self.advance(self.now + timedelta(hours=25))
        with transaction(engine()) as session:
            approved = disputes.close_due_juries(session, self.now)
        for claim_id in approved:
            with transaction(engine()) as session:
                claim_service.schedule(session, claim_id, self.now)

    # --- the announcement and objections ---

    @precondition(lambda self: not self.published)
    @rule()
    def publish(self) -> None:
        self.advance(start_of_day(self.cycle_on))
        with transaction(engine()) as session:
            cycle_service.publish(session, CRITICAL, self.now)
        self.published = True

    @precondition(lambda self: self.published and self.room(HOUR))
    @rule(pick=st.integers(0, 9), objector=st.sampled_from(JURORS))
    def object(self, pick: int, objector: str) -> None:
        self.advance(self.now + HOUR)
        cases = self.claims_in(["announced", "objected"])
        if not cases:
            return
        try:
            with transaction(engine()) as session:
                case = cases[pick % len(cases)]
                disputes.file_objection(session, case, objector, "seen at work", None, self.now)
        except disputes.Refused:
            pass  # objected by them already, or its jury's verdict is final

    def claims_in(self, states: list[str]) -> list[str]:
        with transaction(engine()) as session:
            return list(
                session.exec(
                    select(Claim.submission_id)
                    .where(col(Claim.state).in_(states))
                    .order_by(Claim.id)
                )
            )

    @rule(uphold=st.booleans(), pick=st.integers(0, 5))
    def decide(self, uphold: bool, pick: int) -> None:
        with transaction(engine()) as session:
            still_open = session.exec(
                select(Objection.id).where(Objection.status == "open").order_by(Objection.id)
            ).all()
        if still_open:
            with transaction(engine()) as session:
                disputes.decide_objection(
                    session, still_open[pick % len(still_open)], uphold, "dr-li", "", self.now
                )

    # --- the close, debits and payouts ---

    @precondition(lambda self: self.published)
    @rule(redeliver=st.booleans(), lose_payouts=st.booleans())
    def close(self, redeliver: bool, lose_payouts: bool) -> None:
        self.advance(self.next_boundary())
        with transaction(engine()) as session:
            cycle = cycle_service.begin_close(session, CRITICAL, self.now, chunk_size=5)
        for _ in range(2 if redeliver else 1):
            for chunk in range(cycle.chunks):
                with transaction(engine()) as session:
                    cycle_service.charge_chunk(session, cycle.id, chunk, self.now, proof_keys())
            with transaction(engine()) as session:
                cycle_service.finalise(session, cycle.id, self.now, proof_keys())
        if not lose_payouts:  # else the pay_out_cycle message is lost; the sweep finds it
            with transaction(engine()) as session:
                payments.create_cycle_payouts(session, cycle.id, self.now)
        self.open_windows.append((cycle.id, payments.retry_deadline(self.cycle_on)))
        self.cycle_on, self.published = next_announcement_day(self.cycle_on), False

    @precondition(lambda self: self.open_windows and self.room(timedelta(days=1)))
    @rule(failing=st.sets(st.sampled_from(PEOPLE), max_size=4), lose_answer=st.booleans())
    def collect(self, failing: set[str], lose_answer: bool) -> None:
        """A day's round of debits of each open cycle; the refused ones fail."""
        self.advance(self.now + timedelta(days=1))
        for cycle_id, _ in list(self.open_windows):
            with transaction(engine()) as session:
                round_no, batches = payments.open_round(session, cycle_id, self.now, 1000)
            debits = []
            for batch in range(batches):
                with transaction(engine()) as session:
                    debits += payments.claim_batch(session, cycle_id, batch, round_no)
            if not lose_answer:
                self.answer(debits, {d.key for d in debits if d.account not in failing})

    def answer(self, debits: list[payments.Debit], succeeded: set[str]) -> None:
        with transaction(engine()) as session:
            payments.record_debits(session, debits, succeeded, self.now)

    @rule(ref=st.sampled_from(PEOPLE))
    def settle(self, ref: str) -> None:
        """A member pays what they owe, at their own request."""
        with transaction(engine()) as session:
            arrears = payments.claim_arrears(session, CRITICAL, ref)
        self.answer(arrears, {d.key for d in arrears})

    @rule(answer=st.sampled_from(["paid", "refused", "lost"]), answered_twice=st.booleans())
    def pay(self, answer: str, answered_twice: bool) -> None:
        """Up to three pending payouts sent; the provider pays, refuses (a person must act), or
        its answer is lost (pay_pending sends it again, under the same key)."""
        with transaction(engine()) as session:
            pending = payments.pending_payouts(session, limit=3)
        self.pay_out(pending, answer, answered_twice)

    def pay_out(self, pending: list[int], answer: str, answered_twice: bool) -> None:
        for payout_id in pending:
            with transaction(engine()) as session:
                payout = payments.claim_payout(session, payout_id, self.now)
            if payout is None or answer == "lost":
                continue
            for _ in range(2 if answered_twice else 1):
                with transaction(engine()) as session:
                    payments.record_payout(
                        session, payout.id, answer == "paid", "ref", None, self.now
                    )

    # --- the proof ---

    @invariant()
    def the_audit_finds_nothing(self) -> None:
        with transaction(engine()) as session:
            report = audit_service.audit(session, self.now, keys=proof_keys())
        assert report.balanced, report.problems

    @invariant()
    def no_objection_stands_against_a_decided_case(self) -> None:
        with transaction(engine()) as session:
            stale = session.exec(
                select(Objection.id)
                .join(Claim, Claim.id == Objection.claim_id)
                .where(Objection.status == "open", Claim.state.in_(["rejected", "paid"]))  # type: ignore[attr-defined]
            ).all()
            juries = session.exec(select(JuryCase)).all()
        assert stale == []
        assert all(case.status != "open" or case.closes_at > self.now for case in juries)


@pytest.mark.slow
def test_the_books_stay_true_through_any_sequence():
    run_state_machine_as_test(
        Books,
        settings=settings(
            max_examples=20,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print(sorted(REACHED.items()))
