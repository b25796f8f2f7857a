"""The debit state machine in the database: keys fixed before the request, answers recorded
against their key, rounds, the window, arrears and refunds, whatever order things happen in."""

from datetime import timedelta

from sqlmodel import select

from broker.database import engine
from broker.proofkeys import proof_keys
from domain.db import transaction
from domain.models import Charge, Payout, SharingCycle
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import members as member_service
from domain.services import payments
from tests.integration.scenario import (
    ANNOUNCE_ON,
    CLOSE_AT,
    CRITICAL,
    NOW_UTC,
    PUBLISH_AT,
    member,
    membership,
    review_by_records,
    submission,
)

WINDOW_CLOSES = payments.retry_deadline(ANNOUNCE_ON)


def closed_cycle(extra=()) -> int:
    report = member_service.ImportReport()
    member_service.import_members(engine(), enumerate([*membership(6, 0), *extra], start=2), report)
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(
            session, submission("s", "C0005", "C73"), NOW_UTC
        )
    for step in (claim_service.accept, review_by_records, claim_service.schedule):
        with transaction(engine()) as session:
            step(session, claim_id, NOW_UTC)
    with transaction(engine()) as session:
        cycle_service.publish(session, CRITICAL, PUBLISH_AT)
        cycle = cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=100)
    with transaction(engine()) as session:
        cycle_service.charge_chunk(session, cycle.id, 0, NOW_UTC, proof_keys())
    with transaction(engine()) as session:
        cycle_service.finalise(session, cycle.id, NOW_UTC, proof_keys())
    return cycle.id


def send_round(cycle_id: int, at) -> list[payments.Debit]:
    with transaction(engine()) as session:
        round_no, batches = payments.open_round(session, cycle_id, at, batch_size=1000)
    debits = []
    for batch in range(batches):
        with transaction(engine()) as session:
            debits += payments.claim_batch(session, cycle_id, batch, round_no)
    return debits


def answer(debits, succeeded) -> int:
    with transaction(engine()) as session:
        return payments.record_debits(session, debits, set(succeeded), NOW_UTC)


def statuses(cycle_id: int) -> list[tuple[str, str | None]]:
    with transaction(engine()) as session:
        return [
            (c.debit_status, c.debit_key)
            for c in session.exec(
                select(Charge).where(Charge.cycle_id == cycle_id).order_by(Charge.member_id)
            )
        ]


def test_a_lost_answer_is_asked_again_under_the_same_key(stack):
    cycle_id = closed_cycle()
    first = send_round(cycle_id, CLOSE_AT)
    assert [d.key for d in first][:2] == [f"charge:{cycle_id}:1:1", f"charge:{cycle_id}:2:1"]
    # The answer is lost; the next day nothing has failed, so round 1 goes on, same keys.
    again = send_round(cycle_id, CLOSE_AT + timedelta(days=1))
    assert [d.key for d in again] == [d.key for d in first]
    # Two answers come back: one failure. The day after, round 2 retries it under a new key.
    answer(again, [d.key for d in again[1:]])
    retry = send_round(cycle_id, CLOSE_AT + timedelta(days=2))
    assert [d.key for d in retry] == [f"charge:{cycle_id}:1:2"]


def test_a_stale_answer_moves_nothing(stack):
    cycle_id = closed_cycle()
    first = send_round(cycle_id, CLOSE_AT)
    answer(first, [])  # every debit refused
    retry = send_round(cycle_id, CLOSE_AT + timedelta(days=1))
    assert answer(first, [d.key for d in first]) == 0  # a late "succeeded" to round 1
    assert all(status == "sending" for status, _ in statuses(cycle_id))
    assert answer(retry, [d.key for d in retry]) == 6 * 10


def test_the_window_closes_only_when_every_debit_has_an_answer(stack):
    cycle_id = closed_cycle()
    sent = send_round(cycle_id, CLOSE_AT)
    with transaction(engine()) as session:
        assert payments.close_window(session, cycle_id, WINDOW_CLOSES) == []
        assert session.get(SharingCycle, cycle_id).arrears_settled_at is None
    answer(sent, [d.key for d in sent[1:]])
    with transaction(engine()) as session:
        payments.close_window(session, cycle_id, WINDOW_CLOSES)
        assert session.get(SharingCycle, cycle_id).arrears_settled_at == WINDOW_CLOSES


def test_a_late_close_still_collects_before_the_window_ends(stack):
    cycle_id = closed_cycle()
    sent = send_round(cycle_id, WINDOW_CLOSES + timedelta(days=1))  # round 1, days late
    assert len(sent) == 6
    with transaction(engine()) as session:
        assert payments.close_window(session, cycle_id, WINDOW_CLOSES + timedelta(days=1)) == []
    answer(sent, [d.key for d in sent])
    with transaction(engine()) as session:
        assert payments.money_figures(session, cycle_id)["collected_fen"] == 60


def test_arrears_are_settled_after_the_window_under_their_own_keys(stack):
    cycle_id = closed_cycle()
    sent = send_round(cycle_id, CLOSE_AT)
    answer(sent, [d.key for d in sent[1:]])
    with transaction(engine()) as session:
        assert payments.claim_arrears(session, CRITICAL, "C0000") == []  # the window is open
        payments.close_window(session, cycle_id, WINDOW_CLOSES)
    with transaction(engine()) as session:
        [arrears] = payments.claim_arrears(session, CRITICAL, "C0000")
    assert arrears.key == f"settle:{cycle_id}:1:2"
    answer([arrears], [arrears.key])
    with transaction(engine()) as session:
        report = audit_service.audit(session, keys=proof_keys())
    assert report.balanced, report.problems


def test_a_share_collected_after_a_waiting_period_rejection_is_refunded(stack):
    cycle_id = closed_cycle(extra=[member("C-NEW", CRITICAL, 30, joined_days_ago=20)])
    sent = send_round(cycle_id, CLOSE_AT)
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(
            session, submission("waiting", "C-NEW", "C50.9"), NOW_UTC
        )
    for step in (claim_service.accept, review_by_records):
        with transaction(engine()) as session:
            step(session, claim_id, NOW_UTC)
    answer(sent, [d.key for d in sent])  # collected after the rejection
    with transaction(engine()) as session:
        [refund] = session.exec(select(Payout).where(Payout.purpose == "refund")).all()
    assert (refund.key, refund.account, refund.amount_fen) == (
        f"refund:{cycle_id}:7",
        "C-NEW",
        10,
    )
