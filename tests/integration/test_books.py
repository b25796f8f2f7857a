"""The books are true, not only balanced: every money flow lands on the accounts its name says,
no settled case is left unpaid, a waiting-period illness is refunded however the membership
ended, a jury's verdict stands; and the audit fails when any of these does not hold."""

from datetime import timedelta

import pytest
from sqlmodel import col, select

from broker.database import engine
from broker.proofkeys import proof_keys
from domain import accounts
from domain.calendar import next_announcement_day, start_of_day
from domain.db import transaction
from domain.models import Claim, LedgerEntry, Member, MemberEvent, Objection, Payout
from domain.records import Condition, Evidence, Reply
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import disputes, payments
from domain.services import members as member_service
from tests.integration.scenario import (
    ANNOUNCE_ON,
    CLOSE_AT,
    CRITICAL,
    DIAGNOSED,
    NOW_UTC,
    PUBLISH_AT,
    SENIOR,
    member,
    review_by_records,
    submission,
)
from tests.integration.support import wait_until
from tests.integration.test_debits import answer, closed_cycle, send_round
from tests.integration.test_disputes import (
    OBJECTING,
    claim_through_rules,
    close,
    count_votes,
    enrol,
    juror,
    object_to,
    publish,
    state,
    vote,
)
from workers.housekeeping import redrive_stuck

AID = accounts.aid_payable(CRITICAL)
CASH = accounts.cash(CRITICAL)


def books(now=None) -> audit_service.AuditReport:
    with transaction(engine()) as session:
        return audit_service.audit(session, now, keys=proof_keys())


def pay_everything(cycle_id: int, succeed: bool = True) -> list[int]:
    """What pay_out_cycle and pay_out do, in process; returns the payout ids."""
    with transaction(engine()) as session:
        payout_ids = payments.create_cycle_payouts(session, cycle_id, NOW_UTC)
    for payout_id in payout_ids:
        with transaction(engine()) as session:
            payout = payments.claim_payout(session, payout_id, NOW_UTC)
        with transaction(engine()) as session:
            payments.record_payout(session, payout.id, succeed, "ref-1", None, NOW_UTC)
    return payout_ids


def ledger(key_prefix: str) -> list[LedgerEntry]:
    with transaction(engine()) as session:
        return list(session.exec(select(LedgerEntry).where(starts(key_prefix))))


def starts(key_prefix: str):
    return col(LedgerEntry.key).startswith(key_prefix)


def test_a_paid_cycle_owes_its_patients_nothing_and_cash_is_what_came_in_less_what_went_out(
    stack,
):
    cycle_id = closed_cycle()
    sent = send_round(cycle_id, CLOSE_AT)
    answer(sent, [d.key for d in sent])  # 6 members pay their 10 fen
    pay_everything(cycle_id)
    report = books(NOW_UTC)
    assert report.balanced, report.problems
    # One 300,000-yuan case: 60 fen from members, the rest (and the fee) covered by the platform.
    assert report.accounts[AID] == 0
    assert report.accounts[accounts.subsidy_due(CRITICAL)] == 0
    assert report.accounts[accounts.receivable(CRITICAL)] == 0
    fee = report.accounts[accounts.fee_income(CRITICAL)]
    assert fee == 2_400_000
    # Cash keeps the fee: collections + subsidy paid in - the payout.
    assert report.accounts[CASH] == fee
    [payout] = ledger("payout:aid:")
    assert (payout.debit, payout.credit, payout.amount_fen) == (AID, CASH, 30_000_000)


def senior_cycle(members: int) -> int:
    """A closed senior-cancer cycle of one 100,000-yuan case; with more than 8,000 members the
    members' shares (1 yuan each, the cap) come to more than the 8% fee, so the platform's
    subsidy alone does not cover the payout."""
    enrol([member(f"S{n:05d}", SENIOR, 62 + n % 5) for n in range(members)])
    claim_through_rules(submission("senior", "S00001", "C34.1", plan=SENIOR))
    with transaction(engine()) as session:
        cycle_service.publish(session, SENIOR, PUBLISH_AT)
        cycle = cycle_service.begin_close(session, SENIOR, CLOSE_AT, chunk_size=100_000)
    with transaction(engine()) as session:
        cycle_service.charge_chunk(session, cycle.id, 0, NOW_UTC, proof_keys())
    with transaction(engine()) as session:
        cycle_service.finalise(session, cycle.id, NOW_UTC, proof_keys())
    return cycle.id


def test_a_payout_before_the_debits_come_in_is_funded_by_the_platform_first(stack):
    cycle_id = senior_cycle(9_000)  # charges 900,000 fen; fee 800,000; subsidy 9,900,000
    pay_everything(cycle_id)  # the patient is paid the day of the close, before any debit
    [funding] = [e for e in ledger("funding:") if e.credit.startswith("platform-funding:")]
    assert (funding.debit, funding.amount_fen) == (accounts.cash(SENIOR), 100_000)
    report = books(NOW_UTC)
    assert report.balanced, report.problems
    assert report.accounts[accounts.cash(SENIOR)] == 0
    assert report.accounts[accounts.platform_funding(SENIOR)] == 100_000
    sent = send_round(cycle_id, CLOSE_AT)
    answer(sent, [d.key for d in sent])
    report = books(NOW_UTC)
    assert report.balanced, report.problems
    assert report.accounts[accounts.cash(SENIOR)] == 900_000  # the fee and the platform's advance


def test_the_audit_fails_a_payout_booked_the_old_way(stack):
    cycle_id = closed_cycle()
    pay_everything(cycle_id)
    with transaction(engine()) as session:
        entry = session.exec(select(LedgerEntry).where(starts("payout:aid:"))).one()
        entry.debit, entry.credit = "patients", AID  # the defect: the payable grows instead
        session.add(entry)
    problems = books(NOW_UTC).problems
    assert any("books aid-payable:critical-illness -> patients" in p for p in problems), problems
    assert any("patients is not in the chart of accounts" in p for p in problems)
    assert any(p.startswith(f"{CASH} stands at") for p in problems)
    assert any(p.startswith(f"{AID} stands at") for p in problems)


def test_the_audit_fails_cash_paid_out_before_it_was_there(stack):
    cycle_id = closed_cycle()
    pay_everything(cycle_id)
    with transaction(engine()) as session:
        for entry in session.exec(select(LedgerEntry).where(LedgerEntry.debit == CASH)).all():
            if entry.key.startswith("funding:"):
                session.delete(entry)  # as if the platform had never paid its part in
    problems = books(NOW_UTC).problems
    assert any(p.startswith(f"{CASH} went down to -") for p in problems), problems
    assert any("subsidy into cash before the patients were paid" in p for p in problems)


def test_a_settled_case_whose_payout_message_was_lost_is_listed_and_found_by_the_sweep(stack):
    cycle_id = closed_cycle()
    send_round(cycle_id, CLOSE_AT)  # round 1 went out; pay_out_cycle never arrived
    assert books(NOW_UTC).balanced
    late = NOW_UTC + timedelta(days=8)
    assert any("still unpaid after 7 days" in p for p in books(late).problems)
    with transaction(engine()) as session:
        assert payments.settled_without_payout(session) == [cycle_id]
    pay_everything(cycle_id)  # what the sweep's pay_out_cycle does
    with transaction(engine()) as session:
        assert payments.settled_without_payout(session) == []
    report = books(late)
    assert report.balanced, report.problems


def test_the_sweep_sends_the_payouts_a_lost_message_never_made(stack, worker):
    cycle_id = closed_cycle()  # closed in process: no pay_out_cycle message was ever sent
    redrive_stuck()

    def paid() -> bool:
        with transaction(engine()) as session:
            return session.exec(select(Claim.state).where(Claim.cycle_id == cycle_id)).one() == (
                "paid"
            )

    wait_until(paid, 60, "the settled claim paid by the sweep")
    report = books(NOW_UTC + timedelta(days=8))
    assert report.balanced, report.problems


def waiting_period_claim(ref: str) -> int:
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(
            session, submission(f"waiting-{ref}", ref, "C50.9"), NOW_UTC
        )
    with transaction(engine()) as session:
        claim_service.accept(session, claim_id, NOW_UTC)
    with transaction(engine()) as session:
        review_by_records(session, claim_id, NOW_UTC)
    return claim_id


def test_a_member_who_had_left_still_gets_their_waiting_period_shares_back(stack):
    cycle_id = closed_cycle(extra=[member("C-NEW", CRITICAL, 30, joined_days_ago=20)])
    sent = send_round(cycle_id, CLOSE_AT)
    answer(sent, [d.key for d in sent])  # C-NEW paid 10 fen
    with transaction(engine()) as session:
        member_service.exit_member(session, CRITICAL, "C-NEW", CLOSE_AT)  # leaves, then claims
    waiting_period_claim("C-NEW")
    assert state("waiting-C-NEW")[:2] == ("rejected", "inside_waiting_period")
    with transaction(engine()) as session:
        [refund] = session.exec(select(Payout).where(Payout.purpose == "refund")).all()
        leaver = session.exec(select(Member).where(Member.member_ref == "C-NEW")).one()
    assert (refund.key, refund.amount_fen) == (f"refund:{cycle_id}:{leaver.id}", 10)
    assert leaver.exit_reason == "voluntary"  # the exit stands as it was
    pay_everything(cycle_id)
    with transaction(engine()) as session:
        payout = payments.claim_payout(session, refund.id, NOW_UTC)
    with transaction(engine()) as session:
        payments.record_payout(session, payout.id, True, "ref-2", None, NOW_UTC)
    report = books(NOW_UTC)
    assert report.balanced, report.problems
    assert report.accounts[accounts.refunds(CRITICAL)] == 10


def test_the_audit_fails_a_waiting_period_rejection_left_unrefunded(stack):
    cycle_id = closed_cycle(extra=[member("C-NEW", CRITICAL, 30, joined_days_ago=20)])
    sent = send_round(cycle_id, CLOSE_AT)
    answer(sent, [d.key for d in sent])
    waiting_period_claim("C-NEW")
    assert books(NOW_UTC).balanced
    with transaction(engine()) as session:
        session.delete(session.exec(select(Payout).where(Payout.purpose == "refund")).one())
    problems = books(NOW_UTC).problems
    assert any("after a waiting-period illness, refunded 0" in p for p in problems), problems


@pytest.fixture
def announced_case(stack):
    enrol(
        [
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            *(juror(f"J{n}") for n in range(1, 5)),
        ]
    )
    claim_through_rules(submission("case", "APPLICANT", "C73"))
    publish()


def jury_approves(case: str) -> None:
    with transaction(engine()) as session:
        jury = disputes.request_jury(session, case, NOW_UTC)
        jury.min_votes = 4  # the plan asks 1,000; a small jury here, same rule
        session.add(jury)
    for ref in ("J1", "J2", "J3", "J4"):
        vote(jury.id, ref, True)
    approved, _ = count_votes()
    assert approved
    with transaction(engine()) as session:
        claim_service.schedule(session, approved[0], NOW_UTC)


def upheld_with_another_open() -> tuple[int, int]:
    """Two objections to the case; the first is upheld."""
    upheld = object_to("case", "J1")
    left_open = object_to("case", "J2")
    with transaction(engine()) as session:
        disputes.decide_objection(session, upheld, True, "dr-li", "fraud", OBJECTING)
    return upheld, left_open


def test_a_jury_verdict_is_not_overturned_by_an_objection_left_open(announced_case):
    upheld, left_open = upheld_with_another_open()
    with transaction(engine()) as session:
        other = session.get(Objection, left_open)
        assert (other.status, other.decided_by) == ("upheld", "reviewer:dr-li")
        assert f"settled with objection {upheld}" in other.note
    history = [e.reason for e in claim_history("case")]
    assert any(f"objection {left_open} upheld" in (r or "") for r in history)
    assert state("case")[:2] == ("rejected", "objection_upheld")

    jury_approves("case")
    # The jury's verdict is final: the next announcement lists it, no one may object again.
    # The next announcement day (7th or 21st), not two weeks on: from the 21st that is the 4th.
    next_publish = start_of_day(next_announcement_day(ANNOUNCE_ON))
    publish(next_publish)
    assert state("case")[0] == "announced"
    with pytest.raises(disputes.Refused, match="verdict is final"):
        object_to("case", "J3", at=next_publish + timedelta(days=1))
    assert books(NOW_UTC).balanced


def test_the_audit_fails_an_objection_left_open_on_a_decided_case(announced_case):
    _, left_open = upheld_with_another_open()
    with transaction(engine()) as session:
        other = session.get(Objection, left_open)
        other.status = "open"  # as the old code left it
        session.add(other)
    problems = books(NOW_UTC).problems
    assert any(f"objection {left_open} is still open" in p for p in problems), problems


def test_dismissing_an_objection_settles_the_others_and_the_case_stands(announced_case):
    first, second = object_to("case", "J1"), object_to("case", "J2")
    with transaction(engine()) as session:
        disputes.decide_objection(session, first, False, "dr-li", "no evidence", OBJECTING)
    with transaction(engine()) as session:
        assert session.get(Objection, second).status == "dismissed"
    assert state("case")[0] == "announced"
    closed = close()
    assert closed.cases == 1 and state("case")[0] == "settled"


def claim_history(submission_id: str):
    with transaction(engine()) as session:
        return claim_service.claim_history(session, submission_id).events


def undisclosed_rejection(submission_id: str) -> None:
    """APPLICANT's claim, rejected: the records show the illness years before joining."""
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(
            session, submission(submission_id, "APPLICANT", "C73"), NOW_UTC
        )
    with transaction(engine()) as session:
        claim_service.accept(session, claim_id, NOW_UTC)
    earlier = [Condition("C73", DIAGNOSED - timedelta(days=900), "resolved")]
    evidence = Evidence(
        Reply.FOUND, diagnosis=[Condition("C73", DIAGNOSED, "active")], earlier=earlier
    )
    with transaction(engine()) as session:
        claim_service.review_claim(session, claim_id, NOW_UTC, evidence)
    assert state(submission_id)[:2] == ("rejected", "undisclosed_condition")


def test_a_jury_that_overturns_an_undisclosed_condition_gives_the_membership_back(stack):
    enrol(
        [
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            *(juror(f"J{n}") for n in range(1, 5)),
        ]
    )
    undisclosed_rejection("breach")
    with transaction(engine()) as session:
        applicant = session.exec(select(Member).where(Member.member_ref == "APPLICANT")).one()
        assert applicant.exit_reason == "undisclosed_condition"

    jury_approves("breach")
    with transaction(engine()) as session:
        applicant = session.get(Member, applicant.id)
        assert (applicant.exited_at, applicant.exit_reason) == (None, None)
        [restored] = session.exec(
            select(MemberEvent).where(MemberEvent.member_id == applicant.id)
        ).all()
    assert restored.kind == "restored" and "jury" in restored.reason
    assert state("breach")[0] == "scheduled"


def test_a_jury_after_a_cycle_shared_without_the_member_leaves_the_exit_and_says_so(stack):
    enrol(
        [
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            *(juror(f"J{n}") for n in range(1, 5)),
        ]
    )
    undisclosed_rejection("breach")
    publish()  # a cycle cut off after the exit, without the applicant
    jury_approves("breach")
    with transaction(engine()) as session:
        applicant = session.exec(select(Member).where(Member.member_ref == "APPLICANT")).one()
        [event] = session.exec(
            select(MemberEvent).where(MemberEvent.member_id == applicant.id)
        ).all()
    assert applicant.exit_reason == "undisclosed_condition"
    assert event.kind == "not-restored" and "cycles were shared since the exit" in event.reason
    assert books(NOW_UTC).balanced


def test_a_refund_left_unpaid_past_the_payout_days_fails_the_audit(stack):
    cycle_id = closed_cycle(extra=[member("C-NEW", CRITICAL, 30, joined_days_ago=20)])
    sent = send_round(cycle_id, CLOSE_AT)
    answer(sent, [d.key for d in sent])
    waiting_period_claim("C-NEW")
    pay_everything(cycle_id)
    assert books(NOW_UTC + timedelta(days=6)).balanced  # owed, within the payout days
    problems = books(NOW_UTC + timedelta(days=8)).problems
    assert any(
        p.startswith("refund refund:") and "still unpaid after 7 days" in p for p in problems
    )


def test_a_late_payment_without_an_answer_is_for_a_person_not_an_imbalance(stack):
    cycle_id = closed_cycle()
    sent = send_round(cycle_id, CLOSE_AT)
    answer(sent, [d.key for d in sent[1:]])  # the first member's debit fails
    pay_everything(cycle_id)
    with transaction(engine()) as session:
        payments.close_window(session, cycle_id, payments.retry_deadline(ANNOUNCE_ON))
        debtor = session.get(Member, sent[0].member_id).member_ref
    with transaction(engine()) as session:
        [late] = payments.claim_arrears(session, CRITICAL, debtor)  # sent; its answer is lost
    report = books(NOW_UTC)
    assert report.balanced, report.problems
    assert any(late.key in item and "no answer" in item for item in report.attention)
    answer([late], [late.key])  # asked again under the same key, it is collected once
    report = books(NOW_UTC)
    assert report.balanced and report.attention == []
    assert report.accounts[accounts.receivable(CRITICAL)] == 0
