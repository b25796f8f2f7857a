"""The plan's rules where they meet the database: one payout per member whatever the order,
waiting-period exits, exits on an announcement day, and the annual cap in the charging SQL."""

import json
from datetime import date, timedelta

import pytest
from sqlmodel import select

from broker.database import engine
from broker.proofkeys import proof_keys
from domain import proofs
from domain.calendar import start_of_day
from domain.db import transaction
from domain.models import Charge, Claim, Member, SharingCycle
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import members as member_service
from domain.services import proofs as proof_service
from domain.services.store import add_charge_partition
from domain.sharing import member_charge
from tests.integration.scenario import (
    ANNOUNCE_ON,
    CLOSE_AT,
    CRITICAL,
    NOW_UTC,
    PUBLISH_AT,
    enrol,
    member,
    membership,
    review_by_records,
    submission,
)


def record(line: str) -> int:
    with transaction(engine()) as session:
        return claim_service.record_submission(session, line, NOW_UTC)[0]


def step(function, claim_id: int) -> Claim:
    with transaction(engine()) as session:
        return function(session, claim_id, NOW_UTC)


def test_two_claims_of_one_member_are_paid_once_whatever_the_order(stack):
    enrol(membership(10, 0))
    first = record(submission("first", "C0005", "C73"))
    second = record(submission("second", "C0005", "C50.9"))
    # The later claim overtakes the earlier one (its message was lost and re-driven).
    step(claim_service.accept, second)
    assert step(review_by_records, second).state == "approved"
    step(claim_service.accept, first)
    reviewed = step(review_by_records, first)
    assert (reviewed.state, reviewed.reason_code) == ("rejected", "duplicate")


def test_a_reviewer_cannot_approve_a_second_payout(stack):
    enrol(membership(10, 0))
    paid = record(submission("paid", "C0005", "C73"))
    accident = record(submission("accident", "C0005", "S06.2", accident=True))
    for claim_id in (paid, accident):
        step(claim_service.accept, claim_id)
    step(review_by_records, paid)
    waiting = step(review_by_records, accident)
    assert (waiting.state, waiting.reason_code) == ("rejected", "duplicate")
    with transaction(engine()) as session:
        session.get(Claim, accident).state = "needs_review"  # as if it had been sent to a person
    with (
        pytest.raises(ValueError, match="one payout per member per plan"),
        transaction(engine()) as s,
    ):
        claim_service.decide(s, "accident", True, "dr-li", NOW_UTC)


def test_a_reviewer_rejecting_a_waiting_period_illness_ends_the_membership(stack):
    enrol([member("C0001", CRITICAL, 30, joined_days_ago=20)])
    claim_id = record(submission("accident", "C0001", "S06.2", accident=True))
    step(claim_service.accept, claim_id)
    assert step(review_by_records, claim_id).state == "needs_review"
    with transaction(engine()) as session:
        claim_service.decide(
            session, "accident", False, "dr-li", NOW_UTC, claim_service.Reason.INSIDE_WAITING_PERIOD
        )
    with transaction(engine()) as session:
        left = session.exec(select(Member).where(Member.member_ref == "C0001")).one()
    assert left.exit_reason == "waiting_period_illness" and left.exited_at is not None


def test_a_member_who_leaves_on_the_announcement_day_still_shares(stack):
    enrol(membership(4, 0))
    with transaction(engine()) as session:
        member_service.exit_member(session, CRITICAL, "C0000", PUBLISH_AT)  # 00:00 that day
        member_service.exit_member(
            session,
            CRITICAL,
            "C0001",
            PUBLISH_AT - timedelta(hours=1),  # the day before
        )
    with transaction(engine()) as session:
        cycle = cycle_service.publish(session, CRITICAL, PUBLISH_AT)
    assert cycle.sharing_members == 3  # C0000, C0002 and C0003; C0001 left the day before


def test_the_charging_sql_applies_the_annual_cap_exactly_as_the_formula(stack):
    """Members who paid different amounts earlier this year meet the cap at different points."""
    enrol(membership(6, 0))
    year = ANNOUNCE_ON.year
    with transaction(engine()) as session:
        ids = session.exec(select(Member.id).order_by(Member.id)).all()
        earlier = SharingCycle(
            plan=CRITICAL,
            announce_on=date(year, 1, 7),
            charge_on=date(year, 1, 14),
            status="closed",
            cutoff_at=start_of_day(date(year, 1, 7)),
            share_fen=18_800,  # the plan has shared the whole 188-yuan cap this year already
        )
        session.add(earlier)
        session.flush()
        add_charge_partition(session, earlier.id)  # as publishing a cycle does
        paid_before = [18_800, 18_797, 18_790, 0, 18_799, 5]
        for member_id, paid in zip(ids, paid_before, strict=True):
            session.add(
                Charge(
                    cycle_id=earlier.id, member_id=member_id, account_id=member_id, amount_fen=paid
                )
            )
    claim_id = record(submission("good", "C0005", "C73"))
    for function in (claim_service.accept, review_by_records, claim_service.schedule):
        step(function, claim_id)
    with transaction(engine()) as session:
        cycle_service.publish(session, CRITICAL, PUBLISH_AT)
        cycle = cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=4)
    assert cycle.annual_cap_binds and cycle.share_fen == 10
    for chunk_no in range(cycle.chunks):
        with transaction(engine()) as session:
            cycle_service.charge_chunk(session, cycle.id, chunk_no, NOW_UTC, proof_keys())
    with transaction(engine()) as session:
        cycle_service.finalise(session, cycle.id, NOW_UTC, proof_keys())
        charged = dict(
            session.exec(
                select(Charge.member_id, Charge.amount_fen).where(Charge.cycle_id == cycle.id)
            ).all()
        )
        closed = session.get(SharingCycle, cycle.id)
    expected = {
        i: member_charge(10, paid, 18_800) for i, paid in zip(ids, paid_before, strict=True)
    }
    assert charged == expected == dict(zip(ids, [0, 3, 10, 10, 1, 10], strict=True))
    assert closed.annual_cap_subsidy_fen == 6 * 10 - sum(expected.values())
    # The hand-made earlier cycle has no ledger, so audit only this one's balance equation.
    assert (
        closed.charged_fen + closed.subsidy_fen + closed.surplus_in_fen
        == closed.aid_fen + closed.fee_fen + closed.surplus_out_fen
    )
    with transaction(engine()) as session:
        problems = audit_service.audit(session, keys=proof_keys()).problems
        # Each member's proof holds with what the cap left them to pay, 0 fen included.
        trusted = proof_keys().signer.public_key().public_bytes_raw()
        for member in session.exec(select(Member).order_by(Member.id)).all():
            document = proof_service.member_proof(session, closed, member, proof_keys().secret)
            assert document["leaf"]["amount_fen"] == expected[member.id]
            checks = proofs.verify(document, trusted_key=trusted, expected_member=member.member_ref)
            assert proofs.holds(checks), checks
    assert [p for p in problems if f"cycle {cycle.id} " in p] == []


def test_a_claims_line_may_hold_a_unicode_line_separator(sqlite_stack, tmp_path):
    from tests.integration.support import huzhu

    enrol(membership(10, 0))
    line = submission("sep", "C0005", "C73", hospital="协和\u2028医院")
    (tmp_path / "c.jsonl").write_text(line + "\n", encoding="utf-8")
    result = json.loads(
        huzhu(sqlite_stack, "claims", "submit", str(tmp_path / "c.jsonl"), "--json").stdout
    )
    assert result["new_claims"] == 1
    with transaction(engine()) as session:
        assert session.exec(select(Claim.submission_id)).all() == ["sep"]


def test_a_submission_id_with_a_nul_escaped_in_its_json_is_stored_under_its_hash(stack):
    line = json.dumps({"submission_id": "dup\x00-1", "member_ref": "C0001"})  # "\u0000"
    with transaction(engine()) as session:
        claim_id, created = claim_service.record_submission(session, line, NOW_UTC)
    with transaction(engine()) as session:
        claim_service.accept(session, claim_id, NOW_UTC)
    with transaction(engine()) as session:
        claim = session.get(Claim, claim_id)
    assert created and claim.submission_id.startswith("unkeyed-")
    assert (claim.state, claim.reason_code) == ("rejected", "malformed")
