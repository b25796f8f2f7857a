"""Membership rules, pure: who may join a plan, the shape of an enrolment row, and exits."""

import re
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from domain.calendar import local_date
from domain.claims import PRINTABLE
from domain.plans import Plan, PlanCode


class ExitReason(StrEnum):
    VOLUNTARY = "voluntary"
    AGE_LIMIT = "age_limit"
    PAID_OUT = "paid_out"  # one payout per member per plan, then the member leaves
    WAITING_PERIOD_ILLNESS = "waiting_period_illness"
    UNDISCLOSED_CONDITION = "undisclosed_condition"  # a health-declaration breach
    NON_PAYMENT = "non_payment"  # unpaid in two consecutive cycles
    PLAN_ENDED = "plan_ended"  # the plan wound down (domain.winddown)


# The fields a member is known by, checked the same wherever they come in (an import's row,
# the app's enrolment); models using them strip surrounding whitespace first.
MemberRef = Annotated[str, Field(min_length=1, max_length=64), PRINTABLE]
Province = Annotated[str, Field(min_length=1, max_length=32), PRINTABLE]
Name = Annotated[str, Field(max_length=100), PRINTABLE]


class Enrolment(BaseModel):
    """One member as an operator imports them (one CSV row)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    member_ref: MemberRef
    plan: PlanCode
    birth_date: date
    sex: Literal["M", "F"]
    province: Province
    joined_at: AwareDatetime
    payer_ref: Annotated[str, Field(max_length=64), PRINTABLE] | None = None
    name: Name | None = None
    jury_certified: bool = False
    health_declaration: Literal["passed", "failed"] = "passed"
    credit_assessment: Literal["passed", "failed"] = "passed"

    @field_validator("payer_ref", "name")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class Applicant(NamedTuple):
    """An enrolment row read by `quick_reader`: the fields and values `Enrolment` gives it,
    without building a model (a million-row import would build a million)."""

    member_ref: str
    plan: str
    name: str | None
    birth_date: date
    sex: str
    province: str
    joined_at: datetime
    payer_ref: str | None
    jury_certified: bool
    health_declaration: str
    credit_assessment: str


# The shapes the quick reader takes; anything else goes to `Enrolment`, which has the last word
# and the refusal messages. Python's fromisoformat accepts more than pydantic does (`+08`,
# `+05:75`, `19900101`), hence the patterns in front of it.
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fullmatch
MOMENT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
).fullmatch
FLAGS = {"true": True, "false": False}
CHECKS = ("passed", "failed")


def quick_reader(
    header: list[str], plans: dict[str, Plan]
) -> Callable[[list[str]], Applicant | None]:
    """A reader of CSV rows under `header` for the common case, a plain well-formed row: the
    Applicant `Enrolment` would give, or None when the row needs `Enrolment` to judge it
    (anything unusual, every bad row). tests/unit/test_quick_reader.py holds the two equal."""
    if len(set(header)) != len(header):
        return lambda row: None  # a repeated column: the model decides which value counts
    width = len(header)
    place = {column: header.index(column) for column in header}
    required = [place.get(c, width) for c in ("member_ref", "plan", "birth_date", "sex")]
    if width in required or "province" not in place or "joined_at" not in place:
        return lambda row: None
    ref_at, plan_at, birth_at, sex_at = required
    province_at, joined_at = place["province"], place["joined_at"]
    optional = [place.get(c) for c in ("payer_ref", "name", "jury_certified")]
    payer_at, name_at, jury_at = optional
    health_at, credit_at = place.get("health_declaration"), place.get("credit_assessment")

    def read(row: list[str]) -> Applicant | None:
        if len(row) != width:
            return None
        # Printable (no control characters, no space but " ") and no field that starts or ends
        # with a space: nothing for the model to strip or refuse. A comma inside a field may
        # look like a space at an edge: that row merely takes the model's way.
        text = ",".join(row)
        if (
            not text.isprintable()
            or " ," in text
            or ", " in text
            or text[:1] == " "
            or text[-1:] == " "
        ):
            return None
        member_ref, plan, province = row[ref_at], row[plan_at], row[province_at]
        birth, moment = row[birth_at], row[joined_at]
        if not (0 < len(member_ref) <= 64 and 0 < len(province) <= 32 and plan in plans):
            return None
        if row[sex_at] not in ("M", "F") or not DATE(birth) or not MOMENT(moment):
            return None
        payer = row[payer_at] or None if payer_at is not None else None
        name = row[name_at] or None if name_at is not None else None
        if (payer and len(payer) > 64) or (name and len(name) > 100):
            return None
        jury = False
        if jury_at is not None and row[jury_at]:
            jury = FLAGS.get(row[jury_at])
            if jury is None:
                return None
        health = row[health_at] or "passed" if health_at is not None else "passed"
        credit = row[credit_at] or "passed" if credit_at is not None else "passed"
        if health not in CHECKS or credit not in CHECKS:
            return None
        try:
            born, joined = date.fromisoformat(birth), datetime.fromisoformat(moment)
        except ValueError:
            return None
        return Applicant(
            member_ref, plan, name, born, row[sex_at], province, joined, payer, jury, health, credit
        )

    return read


def join_refusal(plan: Plan, enrolment: Enrolment | Applicant) -> str | None:
    """Why this person may not join the plan, or None when they may."""
    joined_on = local_date(enrolment.joined_at)
    if enrolment.birth_date > joined_on:
        return "born after joining"
    if not plan.can_join_at_age(enrolment.birth_date, joined_on):
        return f"age outside {plan.code}'s joining ages"
    if enrolment.health_declaration != "passed":
        return "health declaration not passed"
    if enrolment.credit_assessment != "passed":
        return "credit assessment not passed"
    return None


# Each refusal's code for the API, by the words of its message (the import reports the words;
# members' apps branch on the code).
REFUSAL_CODES = (
    ("born after joining", "born-after-joining"),
    ("joining ages", "age-outside-plan"),
    ("health declaration", "health-declaration-not-passed"),
    ("credit assessment", "credit-assessment-not-passed"),
    ("already a member", "already-a-member"),
    ("enrol them first", "payer-not-a-member"),
    ("cut-off of a published cycle", "before-published-cutoff"),
    ("pays for them enrols", "payer-is-a-dependant"),
    ("own dependant", "own-dependant"),
    ("belongs to another member", "member-ref-taken"),
    ("winding down", "plan-winding-down"),
)


def refusal_code(message: str) -> str:
    return next((code for words, code in REFUSAL_CODES if words in message), "refused")


def exit_refusal(exited_at: datetime | None, active_dependants: int) -> str | None:
    """Why a voluntary exit is refused, or None when it may go ahead."""
    if exited_at is not None:
        return "already left the plan"
    if active_dependants:
        # The payer's family leaves first (the payer's account pays their shares).
        return f"still pays for {active_dependants} family member(s); they must leave first"
    return None
