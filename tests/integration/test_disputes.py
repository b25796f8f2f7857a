"""Objections and juries in the database, and the announcement page in a real browser."""

import subprocess
from datetime import timedelta

import pytest
from sqlmodel import select

from broker.database import engine
from broker.proofkeys import proof_keys
from domain.calendar import next_announcement_day, start_of_day
from domain.db import transaction
from domain.members import Enrolment
from domain.models import Claim, JuryCase, Objection
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import disputes
from domain.services.announcements import announcement
from tests.integration.scenario import (
    CLOSE_AT,
    CRITICAL,
    NOW_UTC,
    PUBLISH_AT,
    enrol,
    member,
    membership,
    review_by_records,
    reviewer_code,
    submission,
)

OBJECTING = PUBLISH_AT + timedelta(days=1)


def juror(
    ref: str, age: int = 40, days: int = 300, certified: bool = True, payer=None
) -> Enrolment:
    row = member(ref, CRITICAL, age, joined_days_ago=days, payer=payer)
    return row.model_copy(update={"jury_certified": certified})


def claim_through_rules(line: str, now=NOW_UTC) -> int:
    """A claim through intake, the rules and the schedule, all at `now`."""
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(session, line, now)
    for step in (claim_service.accept, review_by_records, claim_service.schedule):
        with transaction(engine()) as session:
            step(session, claim_id, now)
    return claim_id


def publish(at=PUBLISH_AT):
    with transaction(engine()) as session:
        return cycle_service.publish(session, CRITICAL, at)


def state(submission_id: str) -> tuple[str, str | None, int | None]:
    with transaction(engine()) as session:
        claim = claim_service.find_claim(session, submission_id)
        return claim.state, claim.reason_code, claim.cycle_id


def object_to(case: str, member_ref: str, at=OBJECTING) -> int:
    with transaction(engine()) as session:
        return disputes.file_objection(session, case, member_ref, "seen at work", None, at).id


def decide(objection_id: int, uphold: bool) -> None:
    with transaction(engine()) as session:
        disputes.decide_objection(
            session, objection_id, uphold, "dr-li", "re-investigated", NOW_UTC
        )


def close():
    with transaction(engine()) as session:
        cycle = cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=1000)
    for chunk in range(cycle.chunks):
        with transaction(engine()) as session:
            cycle_service.charge_chunk(session, cycle.id, chunk, NOW_UTC, proof_keys())
    with transaction(engine()) as session:
        return cycle_service.finalise(session, cycle.id, NOW_UTC, proof_keys())


@pytest.fixture
def three_cases(stack):
    enrol(membership(40, 0))
    for ref, person in (("kept", "C0005"), ("upheld", "C0006"), ("open", "C0007")):
        claim_through_rules(submission(ref, person, "C73"))
    publish()


def test_objections_decide_which_cases_the_cycle_pays(three_cases):
    dismissed = object_to("kept", "C0010")
    upheld = object_to("upheld", "C0011")
    still_open = object_to("open", "C0012")
    assert state("kept")[0] == state("upheld")[0] == state("open")[0] == "objected"
    decide(dismissed, uphold=False)
    decide(upheld, uphold=True)
    assert state("kept")[0] == "announced"
    assert state("upheld")[:2] == ("rejected", "objection_upheld")

    closed = close()
    # Only the dismissed case is paid: one 300,000-yuan case, capped at 10 fen per member.
    assert (closed.cases, closed.aid_fen, closed.share_fen) == (1, 30_000_000, 10)
    assert state("kept")[0] == "settled"
    assert state("open")[:1] == ("scheduled",) and state("open")[2] is None

    # The case still under objection joins the next announcement, and the objection stays.
    next_cycle = publish(start_of_day(next_announcement_day(PUBLISH_AT.date() + timedelta(days=1))))
    assert state("open") == ("objected", None, next_cycle.id)
    with transaction(engine()) as session:
        assert session.get(Objection, still_open).status == "open"
    # Upheld at last, it leaves this cycle too.
    decide(still_open, uphold=True)
    assert state("open")[:2] == ("rejected", "objection_upheld")


def test_only_members_of_the_plan_may_object_once_inside_the_window(three_cases):
    refusals = {
        "a stranger": ("kept", "NOBODY", OBJECTING, "only members of the same plan"),
        "the applicant": ("kept", "C0005", OBJECTING, "cannot object to their own case"),
        "too late": ("kept", "C0010", CLOSE_AT, "objections are open from"),
        "too early": ("kept", "C0010", PUBLISH_AT - timedelta(minutes=1), "objections are open"),
    }
    for who, (case, ref, at, message) in refusals.items():
        with pytest.raises(disputes.Refused, match=message), transaction(engine()) as session:
            disputes.file_objection(session, case, ref, "why", None, at)
        assert who
    object_to("kept", "C0010")
    with pytest.raises(disputes.Refused, match="once per case"):
        object_to("kept", "C0010")


@pytest.fixture
def rejected_case(stack):
    enrol(
        [
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            juror("SPOUSE", payer="APPLICANT"),
            juror("J1"),
            juror("J2"),
            juror("J3"),
            juror("J4"),
            juror("CHILD", age=15),
            juror("UNCERTIFIED", certified=False),
            juror("NEWCOMER", days=10),
        ]
    )
    claim_id = claim_through_rules(submission("denied", "APPLICANT", reviewer_code()))
    with transaction(engine()) as session:
        claim_service.decide(session, "denied", False, "dr-li", NOW_UTC)
    assert state("denied")[:2] == ("rejected", "criteria_not_met")
    with transaction(engine()) as session:
        case = disputes.request_jury(session, "denied", NOW_UTC)
        case.min_votes = 4  # the plan asks 1,000; a small jury here, same rule
        session.add(case)
    return case.id, claim_id


def vote(case_id: int, ref: str, support: bool) -> bool:
    with transaction(engine()) as session:
        return disputes.cast_vote(session, case_id, ref, support, NOW_UTC + timedelta(hours=1))


def count_votes():
    with transaction(engine()) as session:
        approved = disputes.close_due_juries(session, NOW_UTC + timedelta(days=2))
        return approved, session.exec(select(JuryCase)).one()


def test_a_jury_below_quorum_decides_nothing(rejected_case):
    case_id, _ = rejected_case
    for ref in ("J1", "J2", "J3"):
        assert vote(case_id, ref, True)
    approved, case = count_votes()
    assert (approved, case.valid, case.approved, case.support) == ([], False, False, 3)
    assert state("denied")[0] == "rejected"


def test_a_tied_jury_does_not_pay(rejected_case):
    case_id, _ = rejected_case
    for ref, support in (("J1", True), ("J2", True), ("J3", False), ("J4", False)):
        vote(case_id, ref, support)
    approved, case = count_votes()
    assert (approved, case.valid, case.approved) == ([], True, False)


def test_an_approving_jury_sends_the_case_to_the_next_announcement(rejected_case):
    case_id, claim_id = rejected_case
    for ref, support in (("J1", True), ("J2", True), ("J3", True), ("J4", False)):
        vote(case_id, ref, support)
    assert vote(case_id, "J1", False) is False  # a second vote: the first stands
    approved, case = count_votes()
    assert (approved, case.support, case.oppose, case.approved) == ([claim_id], 3, 1, True)
    with transaction(engine()) as session:
        claim_service.schedule(session, claim_id, NOW_UTC)
        claim = session.get(Claim, claim_id)
        assert (claim.state, claim.reason_code) == ("scheduled", None)
        assert "jury" in claim.reason_detail and "3 for, 1 against" in claim.reason_detail


def test_ineligible_jurors_are_refused_with_a_reason(rejected_case):
    case_id, _ = rejected_case
    for ref, message in (
        ("SPOUSE", "the applicant and their family"),
        ("APPLICANT", "the applicant and their family"),
        ("CHILD", "18 or older"),
        ("UNCERTIFIED", "certification"),
        ("NEWCOMER", "30 days"),
        ("STRANGER", "members of the plan"),
    ):
        with pytest.raises(disputes.Refused, match=message):
            vote(case_id, ref, True)


def test_the_announcement_page_renders_in_a_real_browser(three_cases, tmp_path):
    from api.pages.render import announcement_html
    from api.public import announcement_view

    with transaction(engine()) as session:
        cycle = cycle_service.latest_cycle(session, CRITICAL)
        page = tmp_path / "announcement.html"
        page.write_text(
            announcement_html(announcement_view(announcement(session, cycle))), encoding="utf-8"
        )
    browser = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=390,844",
    ]
    dom = subprocess.run(
        [*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60
    ).stdout
    assert dom.count('class="card case"') == 3 and "吴*漫" in dom and "吴小漫" not in dom
    assert "我有异议" in dom and "预计每人分摊" in dom
    shot = tmp_path / "phone.png"
    subprocess.run([*browser, f"--screenshot={shot}", page.as_uri()], timeout=60, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_jury_cannot_approve_a_second_payout_and_other_juries_still_count(rejected_case):
    case_id, _ = rejected_case
    other = claim_through_rules(submission("paid-first", "APPLICANT", "C73"))  # approved
    assert other and state("paid-first")[0] == "scheduled"
    for ref in ("J1", "J2", "J3", "J4"):
        vote(case_id, ref, True)
    approved, case = count_votes()
    assert approved == [] and case.approved is True and case.status == "closed"
    assert state("denied")[0] == "rejected"
    with transaction(engine()) as session:
        history = claim_service.claim_history(session, "denied").events
    assert "one payout per member" in history[-1].reason
