"""Membership rules: the enrolment row's shape, who may join, and who may leave."""

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from domain.members import Enrolment, exit_refusal, join_refusal
from domain.plans import get_plan

CRITICAL = get_plan("critical-illness")


def enrolment(**changes: object) -> Enrolment:
    row: dict[str, object] = {
        "member_ref": "m-1",
        "plan": "critical-illness",
        "birth_date": "1990-06-10",
        "sex": "F",
        "province": "浙江",
        "joined_at": "2026-01-01T10:00:00+08:00",
    }
    row.update(changes)
    return Enrolment.model_validate(row)


def test_a_good_row_is_accepted_with_passed_checks_by_default() -> None:
    row = enrolment()
    assert row.joined_at == datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    assert (row.health_declaration, row.credit_assessment) == ("passed", "passed")
    assert (row.payer_ref, row.name) == (None, None)


def test_empty_payer_ref_and_name_become_none() -> None:
    row = enrolment(payer_ref="", name="")
    assert (row.payer_ref, row.name) == (None, None)
    assert enrolment(payer_ref=" p-9 ").payer_ref == "p-9"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"sex": "X"}, "sex", "Input should be 'M' or 'F'"),
        ({"joined_at": "2026-01-01T10:00:00"}, "joined_at", "Input should have timezone info"),
        ({"plan": "public-transport"}, "plan", "unknown plan"),
        ({"health_declaration": "maybe"}, "health_declaration", "'passed' or 'failed'"),
    ],
)
def test_a_malformed_row_is_refused_by_field(
    changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        enrolment(**changes)
    [error] = refused.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


def test_a_person_who_may_join_is_not_refused() -> None:
    assert join_refusal(CRITICAL, enrolment()) is None


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"birth_date": "1966-01-01"}, "age outside critical-illness's joining ages"),
        ({"health_declaration": "failed"}, "health declaration not passed"),
        ({"credit_assessment": "failed"}, "credit assessment not passed"),
        ({"birth_date": "2026-01-02"}, "born after joining"),
    ],
)
def test_join_refusal_says_why(changes: dict[str, object], refusal: str) -> None:
    assert join_refusal(CRITICAL, enrolment(**changes)) == refusal


def test_joining_age_is_judged_on_the_shanghai_date() -> None:
    baby = {"birth_date": date(2026, 1, 1)}
    # 16:30 UTC on 30 January is 00:30 on 31 January in Shanghai: 30 days old.
    assert join_refusal(CRITICAL, enrolment(joined_at="2026-01-30T16:30:00Z", **baby)) is None
    assert join_refusal(CRITICAL, enrolment(joined_at="2026-01-30T15:30:00Z", **baby)) == (
        "age outside critical-illness's joining ages"
    )


def test_exit_refusal_stops_a_member_who_already_left() -> None:
    assert exit_refusal(datetime(2026, 1, 1, tzinfo=UTC), 0) == "already left the plan"


def test_exit_refusal_makes_the_payers_family_leave_first() -> None:
    assert exit_refusal(None, 2) == "still pays for 2 family member(s); they must leave first"
    assert exit_refusal(None, 0) is None
