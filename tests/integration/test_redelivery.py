"""At-least-once delivery: every step run twice, out of order or concurrently changes nothing."""

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from broker.database import engine
from broker.proofkeys import proof_keys
from broker.submit import send_step
from domain.db import transaction
from domain.models import Charge, ChargeChunk, Claim, ClaimEvent, LedgerEntry, Member, SharingCycle
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import members as member_service
from tests.integration.scenario import (
    CLAIMS,
    CLOSE_AT,
    CRITICAL,
    PUBLISH_AT,
    membership,
    review_by_records,
)
from tests.integration.support import run_worker, wait_until
from workers import claims as claim_tasks
from workers import cycles as cycle_tasks
from workers import housekeeping

NOW = datetime.now(UTC)


def prepare_announced_cycle(critical: int = 120) -> list[int]:
    """Members, claims decided by the rules, and a published cycle; no worker involved."""
    report = member_service.ImportReport()
    member_service.import_members(engine(), enumerate(membership(critical), start=2), report)
    claim_ids = []
    for line in CLAIMS:
        with transaction(engine()) as session:
            claim_id, _ = claim_service.record_submission(session, line, NOW)
        claim_ids.append(claim_id)
        for step in (claim_service.accept, review_by_records, claim_service.schedule):
            with transaction(engine()) as session:
                step(session, claim_id, NOW)
    with transaction(engine()) as session:
        cycle_service.publish(session, CRITICAL, PUBLISH_AT)
    return sorted(set(claim_ids))


def charge_everything(cycle_id: int) -> None:
    with transaction(engine()) as session:
        chunks = session.get(SharingCycle, cycle_id).chunks
    for chunk_no in range(chunks):
        try:
            with transaction(engine()) as session:
                cycle_service.charge_chunk(session, cycle_id, chunk_no, NOW, proof_keys())
        except IntegrityError:
            pass  # a concurrent run wrote this chunk first
    with transaction(engine()) as session:
        cycle_service.finalise(session, cycle_id, NOW, proof_keys())


def close_a_cycle_in_process() -> int:
    prepare_announced_cycle()
    with transaction(engine()) as session:
        cycle = cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=50)
    charge_everything(cycle.id)
    return cycle.id


def snapshot() -> dict:
    with transaction(engine()) as session:
        return {
            "claims": sorted(
                (c.submission_id, c.state, c.reason_code, c.amount_fen, c.cycle_id)
                for c in session.exec(select(Claim)).all()
            ),
            "events": session.exec(select(func.count()).select_from(ClaimEvent)).one(),
            "charges": session.exec(
                select(func.count(), func.sum(Charge.amount_fen), func.sum(Charge.subsidy_fen))
            ).one(),
            "chunks": session.exec(select(func.count()).select_from(ChargeChunk)).one(),
            "ledger": sorted(
                (e.key, e.debit, e.credit, e.amount_fen)
                for e in session.exec(select(LedgerEntry)).all()
            ),
            "cycles": sorted(
                (c.id, c.status, c.share_fen, c.charged_fen, c.subsidy_fen, c.surplus_out_fen)
                for c in session.exec(select(SharingCycle)).all()
            ),
            "exits": session.exec(
                select(func.count()).where(Member.exit_reason.is_not(None))
            ).one(),
        }


def test_every_task_delivered_again_changes_nothing(stack):
    cycle_id = close_a_cycle_in_process()
    before = snapshot()
    assert before["charges"][0] == 120 and before["cycles"][0][1] == "closed"
    with transaction(engine()) as session:
        claim_ids = session.exec(select(Claim.id)).all()
    # The task bodies exactly as a worker runs them on a redelivered message, in reverse order.
    for claim_id in reversed(claim_ids):
        claim_tasks.announce_claim(claim_id)
        claim_tasks.review_claim(claim_id)
        claim_tasks.accept_claim(claim_id)
    cycle_tasks.close_cycle(CRITICAL, CLOSE_AT.isoformat())
    for chunk_no in range(3):
        cycle_tasks.charge_chunk(cycle_id, chunk_no)
    cycle_tasks.publish_announcements(CRITICAL, PUBLISH_AT.isoformat())
    assert snapshot() == before
    with transaction(engine()) as session:
        assert audit_service.audit(session, keys=proof_keys()).balanced


def test_steps_arriving_out_of_order_wait_for_their_turn(stack):
    member_service.import_members(
        engine(), enumerate(membership(10, 0), start=2), member_service.ImportReport()
    )
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(session, CLAIMS[0], NOW)
    claim_tasks.announce_claim(claim_id)
    claim_tasks.review_claim(claim_id)
    with transaction(engine()) as session:
        assert session.get(Claim, claim_id).state == "received"
    for step in (claim_tasks.accept_claim, claim_tasks.review_claim, claim_tasks.announce_claim):
        step(claim_id)
    with transaction(engine()) as session:
        assert session.get(Claim, claim_id).state == "scheduled"


def test_two_concurrent_closes_produce_one_set_of_charges(stack):
    prepare_announced_cycle(critical=400)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            start.wait()
            with transaction(engine()) as session:
                cycle = cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=50)
            charge_everything(cycle.id)
        except BaseException as error:  # reported below, with the thread's own traceback
            errors.append(error)

    threads = [threading.Thread(target=close) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with transaction(engine()) as session:
        cycle = session.exec(select(SharingCycle)).one()
        rows, members = session.exec(
            select(func.count(), func.count(func.distinct(Charge.member_id)))
        ).one()
        ledger = session.exec(select(func.count()).select_from(LedgerEntry)).one()
        assert audit_service.audit(session, keys=proof_keys()).balanced
    assert cycle.status == "closed" and cycle.chunks == 8
    assert rows == members == 400
    assert ledger == len([m for m in cycle_service.ledger_movements(cycle) if m[3]])


def redelivered(task, *args):
    """Run a task as a worker runs a message the broker restored, which it marks redelivered."""
    task.push_request(args=args, retries=0, delivery_info={"redelivered": True})
    try:
        return task.run(*args)
    finally:
        task.pop_request()


def claim_tried(attempts: int, idle: timedelta = timedelta(0)) -> int:
    """A received claim whose step has been delivered `attempts` times more than once."""
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(session, CLAIMS[0], NOW - idle)
        session.get(Claim, claim_id).attempts = attempts
    return claim_id


def guard_reasons(claim_id: int) -> list[str | None]:
    with transaction(engine()) as session:
        events = session.exec(
            select(ClaimEvent).where(ClaimEvent.claim_id == claim_id, ClaimEvent.actor == "guard")
        ).all()
    return [event.reason for event in events]


def test_a_step_redelivered_too_often_stops_and_asks_for_a_person(stack):
    claim_id = claim_tried(claim_service.MAX_ATTEMPTS)
    redelivered(claim_tasks.accept_claim, claim_id)
    redelivered(claim_tasks.accept_claim, claim_id)
    with transaction(engine()) as session:
        claim = session.get(Claim, claim_id)
        stuck = claim_service.stuck_claims(session, datetime.now(UTC))
        attention = audit_service.audit(session, keys=proof_keys()).attention
    assert claim.state == "received"
    assert guard_reasons(claim_id) == ["the received step failed 5 times; needs attention"]
    assert claim_id not in [claim for claim, _ in stuck]
    assert attention == ["claim good-1: its received step failed 5 times"]


def test_a_step_redelivered_under_the_limit_runs(stack):
    claim_id = claim_tried(claim_service.MAX_ATTEMPTS - 1)
    redelivered(claim_tasks.accept_claim, claim_id)
    with transaction(engine()) as session:
        claim = session.get(Claim, claim_id)
    # Intake ran (and found no such member: none is enrolled here); the count starts again.
    assert (claim.state, claim.reason_code, claim.attempts) == ("rejected", "unknown_member", 0)
    assert guard_reasons(claim_id) == []


def test_the_sweep_counts_each_step_it_sends_again_and_stops_at_the_limit(stack):
    claim_id = claim_tried(claim_service.MAX_ATTEMPTS - 1, idle=timedelta(days=1))
    assert housekeeping.redrive_stuck() == 1  # the fifth delivery, sent
    assert housekeeping.redrive_stuck() == 0  # a sixth is not: a person looks first
    assert housekeeping.redrive_stuck() == 0
    with transaction(engine()) as session:
        claim = session.get(Claim, claim_id)
    assert (claim.state, claim.attempts) == ("received", claim_service.MAX_ATTEMPTS + 1)
    assert guard_reasons(claim_id) == ["the received step failed 5 times; needs attention"]


def test_a_close_sent_twice_to_the_fleet_charges_once(postgres_stack):
    prepare_announced_cycle(critical=400)
    workers = run_worker(postgres_stack, concurrency=2)
    next(workers)
    try:
        send_step("close_cycle", CRITICAL, CLOSE_AT.isoformat())
        send_step("close_cycle", CRITICAL, CLOSE_AT.isoformat())

        def closed():
            with transaction(engine()) as session:
                cycle = session.exec(select(SharingCycle)).one()
                return cycle if cycle.status == "closed" else None

        cycle = wait_until(closed, 60, "the cycle closed")
    finally:
        workers.close()
    with transaction(engine()) as session:
        rows, members = session.exec(
            select(func.count(), func.count(func.distinct(Charge.member_id)))
        ).one()
        assert audit_service.audit(session, keys=proof_keys()).balanced
    assert rows == members == cycle.sharing_members == 400
