"""Membership rules, pure: who may join a plan, the shape of an enrolment row, and exits."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

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


class Enrolment(BaseModel):
    """One member as an operator imports them (one CSV row)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    member_ref: Annotated[str, Field(min_length=1, max_length=64), PRINTABLE]
    plan: PlanCode
    birth_date: date
    sex: Literal["M", "F"]
    province: Annotated[str, Field(min_length=1, max_length=32), PRINTABLE]
    joined_at: AwareDatetime
    payer_ref: Annotated[str, Field(max_length=64), PRINTABLE] | None = None
    name: Annotated[str, Field(max_length=100), PRINTABLE] | None = None
    jury_certified: bool = False
    health_declaration: Literal["passed", "failed"] = "passed"
    credit_assessment: Literal["passed", "failed"] = "passed"

    @field_validator("payer_ref", "name")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


def join_refusal(plan: Plan, enrolment: Enrolment) -> str | None:
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


def exit_refusal(exited_at: datetime | None, active_dependants: int) -> str | None:
    """Why a voluntary exit is refused, or None when it may go ahead."""
    if exited_at is not None:
        return "already left the plan"
    if active_dependants:
        # The payer's family leaves first (the payer's account pays their shares).
        return f"still pays for {active_dependants} family member(s); they must leave first"
    return None
