"""A claim's rules: the submission's shape, the state machine and the medical review."""

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain.claims import (
    Decision,
    IllegalTransition,
    MemberFacts,
    Reason,
    State,
    check_transition,
    parse_submission,
    review,
)
from domain.illnesses import Catalog, load_catalog
from domain.plans import get_plan
from domain.records import Condition, Evidence, Reply

SHANGHAI = timezone(timedelta(hours=8))
RECEIVED_AT = datetime(2026, 3, 1, 10, 0, tzinfo=SHANGHAI)
CRITICAL = get_plan("critical-illness")
SENIOR = get_plan("senior-cancer")
CATALOG: Catalog = load_catalog()


def line(**changes: object) -> str:
    data: dict[str, object] = {
        "submission_id": "sub-1",
        "member_ref": "m-1",
        "plan": "critical-illness",
        "icd10": "C73",
        "diagnosed_on": "2026-02-20",
        "hospital": "浙江大学医学院附属第一医院",
        "accident": False,
    }
    data.update(changes)
    return json.dumps(data, ensure_ascii=False)


# --- the submission ---------------------------------------------------------------------------


def test_a_good_line_is_accepted_and_its_code_normalised() -> None:
    submission, problem = parse_submission(line(icd10="c341", hospital="  某医院  "), RECEIVED_AT)
    assert problem == ""
    assert submission is not None
    assert submission.icd10 == "C34.1"
    assert submission.hospital == "某医院"
    assert submission.diagnosed_on == date(2026, 2, 20)
    assert submission.accident is False


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("hello", "not valid JSON (Expecting value at character 0)"),
        ('[{"submission_id": "sub-1"}]', "a submission must be a JSON object"),
        ('"C73"', "a submission must be a JSON object"),
        (line(accident="yes"), "accident: Input should be a valid boolean"),
        (line(ward="7"), "ward: Extra inputs are not permitted"),
        (
            line(plan="public-transport"),
            "plan: Value error, unknown plan; expected one of critical-illness, senior-cancer",
        ),
        (line(icd10="lung cancer"), "icd10: Value error, not an ICD-10 code (expected e.g. C34.1)"),
        (line(diagnosed_on="2026-03-02"), "diagnosed_on: after the day the claim was received"),
    ],
)
def test_a_bad_line_is_refused_with_a_clear_message(raw: str, problem: str) -> None:
    assert parse_submission(raw, RECEIVED_AT) == (None, problem)


def test_a_missing_field_is_named() -> None:
    data = json.loads(line())
    del data["hospital"]
    assert parse_submission(json.dumps(data), RECEIVED_AT) == (None, "hospital: Field required")


def test_an_impossible_date_is_refused_without_echoing_it() -> None:
    submission, problem = parse_submission(line(diagnosed_on="2026-02-30"), RECEIVED_AT)
    assert submission is None
    assert problem.startswith("diagnosed_on: Input should be a valid date")
    assert "2026-02-30" not in problem


def test_the_day_received_is_the_shanghai_date() -> None:
    # 16:30 UTC on 1 March is 00:30 on 2 March in Shanghai.
    received = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    submission, problem = parse_submission(line(diagnosed_on="2026-03-02"), received)
    assert (submission is not None, problem) == (True, "")


def test_deeply_nested_json_is_refused_rather_than_crashing_intake() -> None:
    submission, problem = parse_submission("[" * 100_000 + "]" * 100_000, RECEIVED_AT)
    # Either refusal would do: too deep to parse, or not a JSON object.
    assert submission is None
    assert problem != ""


def test_bytes_that_are_not_utf8_are_refused_as_not_json() -> None:
    submission, problem = parse_submission(b"\xff{}", RECEIVED_AT)  # type: ignore[arg-type]
    assert submission is None
    assert problem.startswith("not valid JSON")


# --- the state machine ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("received", State.UNDER_REVIEW),
        ("received", State.REJECTED),
        ("under_review", State.APPROVED),
        ("under_review", State.REJECTED),
        ("under_review", State.NEEDS_REVIEW),
        ("needs_review", State.APPROVED),
        ("needs_review", State.REJECTED),
        ("approved", State.SCHEDULED),
        ("scheduled", State.ANNOUNCED),
        ("announced", State.SETTLED),
        ("settled", State.PAID),
        ("announced", State.OBJECTED),
        ("objected", State.ANNOUNCED),  # objection dismissed
        ("objected", State.REJECTED),  # objection upheld
        ("objected", State.SCHEDULED),  # still open at the close: next cycle
        ("rejected", State.APPROVED),  # a jury overturned the rejection
    ],
)
def test_the_documented_transitions_are_allowed(current: str, target: State) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("received", State.APPROVED),
        ("settled", State.RECEIVED),
        ("announced", State.PAID),
        ("paid", State.SETTLED),
        ("rejected", State.SCHEDULED),
        ("objected", State.SETTLED),
        ("approved", State.APPROVED),
    ],
)
def test_other_transitions_are_refused(current: str, target: State) -> None:
    with pytest.raises(IllegalTransition, match=f"cannot go from {current} to {target}"):
        check_transition(current, target)


# --- the review -------------------------------------------------------------------------------

LONG_AGO = datetime(2020, 1, 1, 10, 0, tzinfo=SHANGHAI)
JAN_1_2026 = datetime(2026, 1, 1, 10, 0, tzinfo=SHANGHAI)


def member(
    born: date = date(1990, 6, 10),
    joined_at: datetime = LONG_AGO,
    exited_at: datetime | None = None,
    already_paid: bool = False,
    other_live_claim: bool = False,
) -> MemberFacts:
    return MemberFacts(born, joined_at, exited_at, already_paid, other_live_claim)


def confirmed(icd10: str, on: date) -> Evidence:
    """The hospital's records show the diagnosis as claimed, and nothing earlier."""
    return Evidence(Reply.FOUND, diagnosis=[Condition(icd10, on, "active")])


def decide(
    icd10: str,
    on: date,
    facts: MemberFacts,
    accident: bool = False,
    plan=CRITICAL,
    evidence: Evidence | None = None,
):
    return review(icd10, on, accident, facts, plan, CATALOG, evidence or confirmed(icd10, on))


def test_thyroid_cancer_at_35_long_after_joining_pays_300_000_yuan() -> None:
    assert decide("C73", date(2026, 3, 1), member()) == Decision(
        State.APPROVED, amount_fen=30_000_000, illness_code="malignant-tumour"
    )


def test_a_45_year_old_is_paid_100_000_yuan() -> None:
    decision = decide("C73", date(2026, 3, 1), member(born=date(1980, 6, 10)))
    assert (decision.state, decision.amount_fen) == (State.APPROVED, 10_000_000)


def test_pneumonia_is_not_covered() -> None:
    decision = decide("J18.9", date(2026, 3, 1), member())
    assert (decision.state, decision.reason) == (State.REJECTED, Reason.NOT_COVERED)
    assert decision.amount_fen is None


def test_day_90_of_the_waiting_period_pays_nothing_and_day_91_pays() -> None:
    inside = decide("C73", date(2026, 4, 1), member(joined_at=JAN_1_2026))
    assert (inside.state, inside.reason) == (State.REJECTED, Reason.INSIDE_WAITING_PERIOD)
    assert (inside.amount_fen, inside.illness_code) == (None, "malignant-tumour")
    after = decide("C73", date(2026, 4, 2), member(joined_at=JAN_1_2026))
    assert (after.state, after.amount_fen) == (State.APPROVED, 30_000_000)


def test_an_accident_inside_the_waiting_period_goes_to_a_reviewer_with_the_amount() -> None:
    decision = decide("I21.0", date(2026, 2, 1), member(joined_at=JAN_1_2026), accident=True)
    assert (decision.state, decision.reason) == (State.NEEDS_REVIEW, None)
    assert decision.amount_fen == 30_000_000
    assert decision.illness_code == "acute-myocardial-infarction"


def test_an_illness_that_needs_a_medical_judgement_goes_to_a_reviewer_with_the_amount() -> None:
    illness = next(i for i in CATALOG.covered_by("critical-illness") if i.decided_by == "reviewer")
    code = illness.icd10[0].split("-")[0]
    decision = decide(code, date(2026, 3, 1), member())
    assert (decision.state, decision.reason) == (State.NEEDS_REVIEW, None)
    assert (decision.amount_fen, decision.illness_code) == (30_000_000, illness.code)


@pytest.mark.parametrize(
    ("diagnosed_on", "facts"),
    [
        (date(2025, 12, 31), member(joined_at=JAN_1_2026)),  # before joining
        # Left at 01:00 on 1 March in Shanghai (17:00 UTC the day before).
        (date(2026, 3, 1), member(exited_at=datetime(2026, 2, 28, 17, 0, tzinfo=UTC))),
        (date(2026, 5, 1), member(exited_at=datetime(2026, 2, 28, 17, 0, tzinfo=UTC))),
    ],
)
def test_a_diagnosis_outside_membership_is_rejected(diagnosed_on: date, facts: MemberFacts) -> None:
    decision = decide("C73", diagnosed_on, facts)
    assert (decision.state, decision.reason) == (State.REJECTED, Reason.NOT_MEMBER_AT_DIAGNOSIS)


def test_the_day_before_leaving_is_still_covered() -> None:
    facts = member(exited_at=datetime(2026, 2, 28, 17, 0, tzinfo=UTC))
    assert decide("C73", date(2026, 2, 28), facts).state == State.APPROVED


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (member(already_paid=True), Reason.ALREADY_PAID),
        (member(other_live_claim=True), Reason.DUPLICATE),
    ],
)
def test_one_payout_and_one_live_claim_per_member(facts: MemberFacts, reason: Reason) -> None:
    decision = decide("C73", date(2026, 3, 1), facts)
    assert (decision.state, decision.reason) == (State.REJECTED, reason)


def test_a_critical_illness_member_aged_60_at_diagnosis_is_out_of_the_plan() -> None:
    facts = member(born=date(1966, 3, 1))
    on_birthday = decide("C73", date(2026, 3, 1), facts)
    assert (on_birthday.state, on_birthday.reason) == (State.REJECTED, Reason.AGE_OUT_OF_PLAN)
    day_before = decide("C73", date(2026, 2, 28), facts)
    assert (day_before.state, day_before.amount_fen) == (State.APPROVED, 10_000_000)


@pytest.mark.parametrize(
    ("icd10", "amount", "illness"),
    [("D05.1", 5_000_000, "carcinoma-in-situ"), ("C34.1", 10_000_000, "malignant-tumour")],
)
def test_senior_cancer_pays_by_severity(icd10: str, amount: int, illness: str) -> None:
    decision = decide(icd10, date(2026, 3, 1), member(born=date(1960, 1, 1)), plan=SENIOR)
    assert decision == Decision(State.APPROVED, amount_fen=amount, illness_code=illness)


def test_senior_cancer_does_not_cover_a_heart_attack() -> None:
    decision = decide("I21.0", date(2026, 3, 1), member(born=date(1960, 1, 1)), plan=SENIOR)
    assert (decision.state, decision.reason) == (State.REJECTED, Reason.NOT_COVERED)


def test_an_unknown_patient_at_the_hospital_is_rejected_with_a_reason() -> None:
    decision = decide("C73", date(2026, 3, 1), member(), evidence=Evidence(Reply.UNKNOWN_PATIENT))
    assert (decision.state, decision.reason) == (State.REJECTED, Reason.NO_HOSPITAL_RECORD)


def test_an_unreadable_hospital_reply_goes_to_a_person_never_to_approval() -> None:
    unreadable = Evidence(Reply.UNREADABLE, detail="not a FHIR Bundle")
    decision = decide("C73", date(2026, 3, 1), member(), evidence=unreadable)
    assert decision.state == State.NEEDS_REVIEW
    assert "could not be read: not a FHIR Bundle" in decision.detail


def test_records_must_show_the_code_and_the_date_claimed() -> None:
    other_day = Evidence(Reply.FOUND, diagnosis=[Condition("C73", date(2026, 2, 27), "active")])
    decision = decide("C73", date(2026, 3, 1), member(), evidence=other_day)
    assert (decision.state, decision.reason) == (State.REJECTED, Reason.NOT_CONFIRMED_BY_RECORDS)
    refuted = Evidence(Reply.FOUND, diagnosis=[Condition("C73", date(2026, 3, 1), "refuted")])
    assert decide("C73", date(2026, 3, 1), member(), evidence=refuted).state == State.REJECTED
    finer = Evidence(Reply.FOUND, diagnosis=[Condition("C34.1", date(2026, 3, 1), "active")])
    assert decide("C34", date(2026, 3, 1), member(), evidence=finer).state == State.APPROVED


def test_the_same_illness_recorded_before_joining_is_an_undisclosed_condition() -> None:
    on = date(2026, 3, 1)
    earlier = [Condition("C73.0", date(2019, 5, 1), "resolved")]  # before joining in 2020
    breach = Evidence(Reply.FOUND, diagnosis=[Condition("C73", on, "active")], earlier=earlier)
    decision = decide("C73", on, member(), evidence=breach)
    assert (decision.state, decision.reason) == (State.REJECTED, Reason.UNDISCLOSED_CONDITION)
    unrelated = Evidence(
        Reply.FOUND,
        diagnosis=[Condition("C73", on, "active")],
        earlier=[Condition("J45.9", date(2019, 5, 1), "active")],  # asthma: not the same illness
    )
    assert decide("C73", on, member(), evidence=unrelated).state == State.APPROVED
