"""Claims through a real Celery worker to a closed, balanced cycle, on PostgreSQL + Redis and on
SQLite + the file queue, driven through the `huzhu` command as an operator would."""

import json

from sqlmodel import func, select

from broker.database import engine
from domain.calendar import SHANGHAI
from domain.claims import WORKING
from domain.db import transaction
from domain.models import Charge, Claim, ClaimEvent, LedgerEntry, Member
from domain.services import payments as payment_service
from tests.integration.scenario import (
    ANNOUNCE_ON,
    CLAIMS,
    CLOSE_AT,
    CRITICAL,
    EXPECTED_STATES,
    PUBLISH_AT,
    SENIOR,
    enrol,
    membership,
)
from tests.integration.support import huzhu, wait_until


def claim_states() -> dict[str, tuple[str, str | None, int | None]]:
    with transaction(engine()) as session:
        claims = session.exec(select(Claim)).all()
        return {c.submission_id: (c.state, c.reason_code, c.amount_fen) for c in claims}


def all_resting() -> dict | None:
    states = claim_states()
    return (
        states if states and all(state not in WORKING for state, _, _ in states.values()) else None
    )


def test_claims_flow_through_a_real_worker_to_a_balanced_closed_cycle(stack, worker, tmp_path):
    enrol(membership(critical=120, senior=10))
    claims_file = tmp_path / "claims.jsonl"
    claims_file.write_text("\n".join(CLAIMS) + "\n", encoding="utf-8")

    submitted = json.loads(huzhu(stack, "claims", "submit", str(claims_file), "--json").stdout)
    assert submitted == {
        "submitted": 9,
        "new_claims": 8,
        "already_known": 1,
        "already_known_lines": [3],
    }

    states = wait_until(all_resting, 60, "every claim resting")
    for submission_id, expected in EXPECTED_STATES.items():
        assert states[submission_id] == expected, submission_id
    unkeyed = [sid for sid in states if sid.startswith("unkeyed-")]
    assert len(unkeyed) == 1 and states[unkeyed[0]][:2] == ("rejected", "malformed")

    for reviewer in ("dr-li", "dr-wang"):  # an approval of the largest aid: four eyes
        decided = huzhu(
            stack, "review", "decide", "review-1", "--approve", "--reviewer", reviewer, "--json"
        )
        if json.loads(decided.stdout)["state"] == "approved":
            break
    assert json.loads(decided.stdout)["state"] == "approved"
    wait_until(lambda: claim_states()["review-1"][0] == "scheduled", 30, "review-1 scheduled")

    published = json.loads(
        huzhu(
            stack, "cycle", "publish", "--plan", CRITICAL, "--at", PUBLISH_AT.isoformat(), "--json"
        ).stdout
    )
    assert (published["status"], published["cases"], published["sharing_members"]) == (
        "announced",
        3,
        120,
    )
    assert published["share_fen"] == 30  # the expected share, shown with the announcement

    closed = json.loads(
        huzhu(
            stack, "cycle", "close", "--plan", CRITICAL, "--at", CLOSE_AT.isoformat(), "--json"
        ).stdout
    )
    # 3 cases: 300,000 + 100,000 + 300,000 yuan; fee 8%; 120 members can give at most
    # 10 fen each per patient, so each case collects 1,200 fen and the platform covers the rest.
    aid = 70_000_000
    fee = 5_600_000
    money = ("collected_fen", "outstanding_fen", "debits_failed", "paid_out_fen", "payouts")
    assert {k: v for k, v in closed.items() if k not in money} | {"cycle": None} == {
        "plan": CRITICAL,
        "cycle": None,
        "announce_on": ANNOUNCE_ON.isoformat(),
        "charge_on": CLOSE_AT.astimezone(SHANGHAI).date().isoformat(),
        "status": "closed",
        "sharing_members": 120,
        "cases": 3,
        "aid_fen": aid,
        "fee_fen": fee,
        "surplus_in_fen": 0,
        "surplus_out_fen": 0,
        "share_fen": 30,
        "subsidy_fen": aid + fee - 3_600,
        "platform_share_fen": 0,
        "charged_fen": 3_600,
    }
    # Then the payments queue collects every charge and pays the three patients, once.
    with transaction(engine()) as session:
        cycle_id = session.exec(select(Charge.cycle_id)).first()

    def money_moved():
        with transaction(engine()) as session:
            return payment_service.money_settled(session, [cycle_id])

    wait_until(money_moved, 60, "debits collected and payouts made")
    shown = json.loads(huzhu(stack, "cycle", "show", "--plan", CRITICAL, "--json").stdout)
    assert {k: shown[k] for k in money} == {
        "collected_fen": 3_600,
        "outstanding_fen": 0,
        "debits_failed": 0,
        "paid_out_fen": aid,
        "payouts": 3,
    }

    with transaction(engine()) as session:
        charges = session.exec(
            select(func.count(), func.count(func.distinct(Charge.member_id)))
        ).one()
        paid_out = session.exec(select(func.count()).where(Member.exit_reason == "paid_out")).one()
    assert charges == (120, 120)
    assert paid_out == 3

    history = json.loads(huzhu(stack, "claims", "show", "good-1", "--json").stdout)
    assert [h["to"] for h in history["history"]] == [
        "received",
        "under_review",
        "approved",
        "scheduled",
        "announced",
        "settled",
        "paid",
    ]
    assert json.loads(huzhu(stack, "audit", "--json").stdout)["balanced"] is True

    # The senior plan is its own pool: its case waits for its own cycle.
    assert claim_states()["senior-1"][0] == "scheduled"
    senior = json.loads(
        huzhu(
            stack, "cycle", "publish", "--plan", SENIOR, "--at", PUBLISH_AT.isoformat(), "--json"
        ).stdout
    )
    assert (senior["cases"], senior["sharing_members"]) == (1, 10)


def test_the_audit_fails_loudly_when_a_charge_is_tampered_with(sqlite_stack, tmp_path):
    from tests.integration.test_redelivery import close_a_cycle_in_process

    close_a_cycle_in_process()
    assert huzhu(sqlite_stack, "audit").returncode == 0
    with transaction(engine()) as session:
        charge = session.exec(select(Charge)).first()
        charge.amount_fen += 1
        session.add(charge)
    result = huzhu(sqlite_stack, "audit", "--json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["balanced"] is False
    assert any("charged" in problem for problem in report["problems"])
    with transaction(engine()) as session:
        assert session.exec(select(func.count()).select_from(LedgerEntry)).one() > 0


def test_the_audit_finds_money_marked_collected_that_the_ledger_never_booked(sqlite_stack):
    from tests.integration.test_redelivery import close_a_cycle_in_process

    close_a_cycle_in_process()
    with transaction(engine()) as session:
        charge = session.exec(select(Charge)).first()
        charge.collected_fen = charge.amount_fen  # as if collected, with no debit booked
        session.add(charge)
    result = huzhu(sqlite_stack, "audit", "--json", check=False)
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert any("the ledger's receivable is" in problem for problem in problems), problems


def test_the_audit_finds_a_step_taken_twice_and_a_state_its_history_does_not_end_in(
    sqlite_stack,
):
    from tests.integration.test_redelivery import close_a_cycle_in_process

    close_a_cycle_in_process()
    with transaction(engine()) as session:
        reviewed = session.exec(select(ClaimEvent).where(ClaimEvent.to_state == "approved")).first()
        session.add(ClaimEvent(**reviewed.model_dump(exclude={"id"})))  # reviewed again
        rejected = session.exec(select(Claim).where(Claim.state == "rejected")).first()
        rejected.state = "approved"  # a state no event led to
        session.add(rejected)
    result = huzhu(sqlite_stack, "audit", "--json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    problems = "\n".join(report["problems"])
    assert f"claim {reviewed.claim_id}: under_review -> approved happened 2 times" in problems
    assert f"claim {rejected.id}: is approved but its history ends in rejected" in problems
    assert sum(report["claims"].values()) == len(set(CLAIMS))
