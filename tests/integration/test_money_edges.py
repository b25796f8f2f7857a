"""Edges of the money rules in the database, each one a defect once found and fixed:

- a cycle that charged nothing (no cases) does not break "two consecutive unpaid cycles": the
  member who failed to pay the cycles before and after it is removed;
- payouts tried before and still pending do not starve the ones never sent;
- a payer's arrears include a family member's charge in another plan, which names the payer's
  first membership row (of any plan) as its account;
- on PostgreSQL, an objection (or its decision) committed while the plan's close starts is
  seen by the close: the close waits for it, and neither pays a case under objection nor
  defers a case whose objection was just dismissed.
"""

import threading
import time
from datetime import timedelta

from sqlalchemy import text
from sqlmodel import select

from broker.database import engine
from broker.proofkeys import proof_keys
from domain.calendar import charge_day, next_announcement_day, start_of_day
from domain.db import transaction
from domain.members import ExitReason
from domain.models import Charge, Member, MemberEvent, Objection, Payout, SharingCycle
from domain.services import cycles as cycle_service
from domain.services import disputes, payments
from tests.integration.scenario import (
    ANNOUNCE_ON,
    CLOSE_AT,
    CRITICAL,
    NOW_UTC,
    PUBLISH_AT,
    SENIOR,
    enrol,
    member,
    membership,
    submission,
)
from tests.integration.test_debits import answer, send_round
from tests.integration.test_disputes import OBJECTING, claim_through_rules, object_to, state

# The three cycles of the removal scenario: A charges, B has no case, C charges again.
A_ON = ANNOUNCE_ON
B_ON = next_announcement_day(A_ON)
C_ON = next_announcement_day(B_ON)


def run_cycle(plan: str, announce_on) -> SharingCycle:
    """Publish the cycle of `announce_on` and close it on its charge day."""
    published, closing = start_of_day(announce_on), start_of_day(charge_day(announce_on))
    with transaction(engine()) as session:
        cycle_service.publish(session, plan, published)
    with transaction(engine()) as session:
        cycle = cycle_service.begin_close(session, plan, closing, chunk_size=1000)
    for chunk in range(cycle.chunks):
        with transaction(engine()) as session:
            cycle_service.charge_chunk(session, cycle.id, chunk, closing, proof_keys())
    with transaction(engine()) as session:
        closed = cycle_service.finalise(session, cycle.id, closing, proof_keys())
    assert closed is not None and closed.status == "closed"
    return closed


def collect_all_but(cycle: SharingCycle, refused: set[str]) -> list[payments.Debit]:
    """The charge day's round of debits, every one collected but those of the `refused`
    accounts' members; returns the refused debits."""
    sent = send_round(cycle.id, start_of_day(cycle.charge_on))
    with transaction(engine()) as session:
        refs = {
            d.key: session.get(Member, d.member_id).member_ref  # type: ignore[union-attr]
            for d in sent
        }
    failed = [d for d in sent if refs[d.key] in refused]
    answer(sent, [d.key for d in sent if d not in failed])
    return failed


def close_window(cycle: SharingCycle) -> list[int]:
    with transaction(engine()) as session:
        return payments.close_window(session, cycle.id, payments.retry_deadline(cycle.announce_on))


def test_a_cycle_that_charged_nothing_does_not_break_two_unpaid_cycles_in_a_row(stack):
    enrol(membership(6, 0))
    claim_through_rules(submission("first", "C0005", "C73"), NOW_UTC)
    cycle_a = run_cycle(CRITICAL, A_ON)
    assert cycle_a.chunks > 0
    [unpaid_a] = collect_all_but(cycle_a, {"C0000"})
    assert close_window(cycle_a) == []  # one unpaid cycle: arrears, still a member

    # B: nothing was decided before its announcement, so it charges no one.
    cycle_b = run_cycle(CRITICAL, B_ON)
    assert (cycle_b.cases, cycle_b.chunks, cycle_b.charged_fen) == (0, 0, 0)
    assert collect_all_but(cycle_b, {"C0000"}) == []
    assert close_window(cycle_b) == []

    # C: a case decided after B's announcement; C0000's debit fails again.
    claim_through_rules(
        submission("second", "C0003", "C73"), start_of_day(B_ON) + timedelta(hours=2)
    )
    cycle_c = run_cycle(CRITICAL, C_ON)
    assert cycle_c.cases == 1
    [unpaid_c] = collect_all_but(cycle_c, {"C0000"})
    assert unpaid_a.member_id == unpaid_c.member_id

    removed = close_window(cycle_c)
    assert removed == [unpaid_c.member_id]
    with transaction(engine()) as session:
        gone = session.get(Member, unpaid_c.member_id)
        assert gone.exit_reason == ExitReason.NON_PAYMENT
        assert gone.exited_at == payments.retry_deadline(C_ON)
        [event] = session.exec(
            select(MemberEvent).where(MemberEvent.member_id == unpaid_c.member_id)
        ).all()
    assert event.kind == "removed"
    assert f"({cycle_a.id} and {cycle_c.id})" in event.reason


def test_payouts_tried_before_do_not_starve_the_ones_never_sent(stack):
    enrol(membership(6, 0))
    with transaction(engine()) as session:
        people = session.exec(select(Member).order_by(Member.id)).all()
        for number, person in enumerate(people):
            session.add(
                Payout(
                    key=f"refund:{CRITICAL}:{person.id}",
                    purpose="refund",
                    plan=CRITICAL,
                    member_id=person.id,
                    account=person.member_ref,
                    amount_fen=10,
                    # The four oldest were sent before, and their answers are not in yet.
                    attempts=1 if number < 4 else 0,
                    created_at=NOW_UTC,
                )
            )
    with transaction(engine()) as session:
        payouts = session.exec(select(Payout).order_by(Payout.id)).all()
        fresh = [p.id for p in payouts if p.attempts == 0]
        tried = [p.id for p in payouts if p.attempts > 0]
        assert max(tried) < min(fresh)  # the tried ones have the lowest ids
        assert payments.pending_payouts(session, limit=2) == fresh
        assert payments.pending_payouts(session, limit=100) == fresh + tried


def test_a_payers_arrears_include_a_familys_charge_that_names_their_other_plans_row(stack):
    # The payer joined the critical-illness plan first, then the senior plan; the family
    # member's payer is the payer's first row, of the critical-illness plan.
    enrol([member("PAYER", CRITICAL, 61)])
    enrol(
        [
            *membership(0, 4),
            member("PAYER", SENIOR, 61),
            member("MOTHER", SENIOR, 66, payer="PAYER"),
        ]
    )
    with transaction(engine()) as session:
        rows = {
            (m.member_ref, m.plan): m
            for m in session.exec(select(Member).where(Member.member_ref.in_(["PAYER", "MOTHER"])))  # type: ignore[attr-defined]
        }
    first_row = rows["PAYER", CRITICAL]
    assert first_row.id < rows["PAYER", SENIOR].id
    assert rows["MOTHER", SENIOR].payer_id == first_row.id

    claim_through_rules(submission("senior", "S0001", "C34.1", plan=SENIOR), NOW_UTC)
    cycle = run_cycle(SENIOR, ANNOUNCE_ON)
    [unpaid] = collect_all_but(cycle, {"MOTHER"})  # the payer's own share was collected
    assert (unpaid.member_id, unpaid.account) == (rows["MOTHER", SENIOR].id, "PAYER")
    with transaction(engine()) as session:
        charge = session.get(Charge, (cycle.id, unpaid.member_id))
        assert charge.account_id == first_row.id
    assert close_window(cycle) == []

    with transaction(engine()) as session:
        arrears = payments.claim_arrears(session, SENIOR, "PAYER")
    assert [(d.member_id, d.account, d.amount_fen) for d in arrears] == [
        (unpaid.member_id, "PAYER", unpaid.amount_fen)
    ]
    assert arrears[0].key == f"settle:{cycle.id}:{unpaid.member_id}:2"
    answer(arrears, [arrears[0].key])
    with transaction(engine()) as session:
        assert session.get(Charge, (cycle.id, unpaid.member_id)).debit_status == "collected"


# The close racing a dispute (PostgreSQL: SQLite lets one writer in at a time). Each dispute
# runs in a transaction of its own that pauses where the test says, holding its locks, until
# the close (in another session) has started and is waiting for a lock; then it goes on and
# commits. Whatever the threads' timing, the close can only go on after the dispute.

WAIT = 30  # seconds: only a bound on a hang, never what a test's outcome depends on


def waiting_for_a_lock(pid: list[int], closer: threading.Thread) -> bool:
    """Whether the close's backend is waiting for a lock (True) or finished without (False)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if pid:
            with engine().connect() as connection:
                blocked = connection.execute(
                    text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                    {"pid": pid[0]},
                ).scalar_one()
            if blocked:
                return True
        if pid and not closer.is_alive():
            return False
        time.sleep(0.01)
    raise AssertionError(f"the close neither waited nor finished in {WAIT} s")


def close_while_held(dispute) -> None:
    """Run `dispute(session, pause)` in a transaction; where it calls `pause()`, it stops
    until the plan's close has started and is waiting, then goes on and commits, and the
    close finishes."""
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    pid: list[int] = []

    def pause() -> None:
        held.set()
        assert release.wait(WAIT), "never released"

    def hold() -> None:
        try:
            with transaction(engine()) as session:
                dispute(session, pause)
                assert held.is_set(), "the dispute never paused"
        except BaseException as error:  # reported by the test's thread
            errors.append(error)
            held.set()

    def close() -> None:
        try:
            with transaction(engine()) as session:
                pid.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
                cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=1000)
        except BaseException as error:
            errors.append(error)

    holder, closer = threading.Thread(target=hold), threading.Thread(target=close)
    holder.start()
    try:
        assert held.wait(WAIT) and not errors, errors
        closer.start()
        # While the dispute's transaction is open, the close cannot get past it.
        assert waiting_for_a_lock(pid, closer), "the close ran without waiting for the dispute"
        assert closer.is_alive()
    finally:
        release.set()
        holder.join(WAIT)
        if closer.ident is not None:
            closer.join(WAIT)
    assert not holder.is_alive() and not closer.is_alive()
    assert not errors, errors


def announced_case() -> int:
    enrol(membership(40, 0))
    claim_through_rules(submission("case", "C0005", "C73"))
    with transaction(engine()) as session:
        cycle = cycle_service.publish(session, CRITICAL, PUBLISH_AT)
    assert state("case") == ("announced", None, cycle.id)
    return cycle.id


def file_objection(session) -> None:
    disputes.file_objection(session, "case", "C0010", "seen at work", None, OBJECTING)


def assert_deferred(cycle_id: int) -> None:
    """The objection is still open at the close: the case is not paid unseen, it waits for
    the next announcement."""
    assert state("case") == ("scheduled", None, None)
    with transaction(engine()) as session:
        assert session.exec(select(Objection.status)).all() == ["open"]
        cycle = session.get(SharingCycle, cycle_id)
        assert (cycle.status, cycle.cases, cycle.aid_fen) == ("closing", 0, 0)


def test_a_close_started_while_an_objection_is_being_filed_defers_the_case(
    postgres_stack, monkeypatch
):
    """The objector has locked the case and is checking the objection (not yet written) when
    the close starts: the close waits for the objection, and does not settle the case."""
    cycle_id = announced_case()
    checked = disputes.objection_refusal

    def filing(session, pause) -> None:
        def check_after_pause(*args):
            pause()
            return checked(*args)

        monkeypatch.setattr(disputes, "objection_refusal", check_after_pause)
        file_objection(session)

    close_while_held(filing)
    assert_deferred(cycle_id)


def test_a_close_started_before_a_filed_objection_commits_defers_the_case(postgres_stack):
    cycle_id = announced_case()

    def filed(session, pause) -> None:
        file_objection(session)
        session.flush()
        pause()

    close_while_held(filed)
    assert_deferred(cycle_id)


def test_a_close_started_while_an_objection_is_dismissed_pays_the_case(postgres_stack):
    cycle_id = announced_case()
    objection = object_to("case", "C0010")
    assert state("case")[0] == "objected"

    def dismissing(session, pause) -> None:
        disputes.decide_objection(session, objection, False, "dr-li", "re-investigated", NOW_UTC)
        session.flush()
        pause()

    close_while_held(dismissing)
    # Dismissed before the close saw it: the case stays in this cycle and is settled.
    assert state("case") == ("settled", None, cycle_id)
    with transaction(engine()) as session:
        assert session.get(SharingCycle, cycle_id).cases == 1
