"""A claim's rules, pure: the submission's shape, the state machine and the medical review."""

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from domain.calendar import age_on, local_date
from domain.illnesses import Catalog, normalise_icd10
from domain.plans import Plan, PlanCode
from domain.records import Evidence, Reply, confirms, tentative, undisclosed


class State(StrEnum):
    RECEIVED = "received"
    UNDER_REVIEW = "under_review"
    NEEDS_REVIEW = "needs_review"
    # A reviewer's rejection, or large approval, waiting for a second reviewer (domain.review).
    AWAITING_SECOND_REVIEW = "awaiting_second_review"
    # A fraud flag or a reviewer sent it to an investigator; the findings send it back.
    INVESTIGATING = "investigating"
    APPROVED = "approved"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"  # approved and waiting for the next announcement
    ANNOUNCED = "announced"
    OBJECTED = "objected"  # a member objected; re-review decides before it can be paid
    SETTLED = "settled"  # its aid was shared out in a closed cycle
    PAID = "paid"


TRANSITIONS: dict[State, set[State]] = {
    State.RECEIVED: {State.UNDER_REVIEW, State.REJECTED},
    State.UNDER_REVIEW: {
        State.APPROVED,
        State.REJECTED,
        State.NEEDS_REVIEW,
        State.INVESTIGATING,
    },
    State.NEEDS_REVIEW: {
        State.APPROVED,
        State.REJECTED,
        State.AWAITING_SECOND_REVIEW,
        State.INVESTIGATING,
    },
    State.INVESTIGATING: {State.NEEDS_REVIEW},
    # The second reviewer confirms the first decision, or sends the claim back to a person.
    State.AWAITING_SECOND_REVIEW: {State.APPROVED, State.REJECTED, State.NEEDS_REVIEW},
    State.APPROVED: {State.SCHEDULED},
    State.SCHEDULED: {State.ANNOUNCED, State.REJECTED},
    State.ANNOUNCED: {State.SETTLED, State.OBJECTED},
    # Dismissed: back on the list; upheld: out; still open at the close: to the next cycle.
    State.OBJECTED: {State.ANNOUNCED, State.REJECTED, State.SCHEDULED},
    # A jury of members may overturn a rejection.
    State.REJECTED: {State.APPROVED},
    State.SETTLED: {State.PAID},
}
# States a worker is about to move a claim out of; a claim idle in one has lost its message.
WORKING = (State.RECEIVED, State.UNDER_REVIEW, State.APPROVED)
# A claim in one of these will be (or was) paid: one per member per plan, whatever the order.
PAYABLE = {
    State.APPROVED,
    State.SCHEDULED,
    State.ANNOUNCED,
    State.OBJECTED,
    State.SETTLED,
    State.PAID,
}
# Not decided yet: an earlier one of these blocks a later claim of the same member.
UNDECIDED = {
    State.RECEIVED,
    State.UNDER_REVIEW,
    State.NEEDS_REVIEW,
    State.AWAITING_SECOND_REVIEW,
    State.INVESTIGATING,
}
# Waiting for a person: the review queue's claims.
WITH_A_PERSON = (State.NEEDS_REVIEW, State.AWAITING_SECOND_REVIEW)


class Reason(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_MEMBER = "unknown_member"
    NOT_MEMBER_AT_DIAGNOSIS = "not_member_at_diagnosis"
    NOT_COVERED = "not_covered"
    DUPLICATE = "duplicate"
    INSIDE_WAITING_PERIOD = "inside_waiting_period"
    AGE_OUT_OF_PLAN = "age_out_of_plan"
    ALREADY_PAID = "already_paid"
    # A reviewer found the case outside the plan's definition of the illness.
    CRITERIA_NOT_MET = "criteria_not_met"
    # The hospital's records: no such patient, no such diagnosis, or the illness before joining.
    NO_HOSPITAL_RECORD = "no_hospital_record"
    NOT_CONFIRMED_BY_RECORDS = "not_confirmed_by_records"
    UNDISCLOSED_CONDITION = "undisclosed_condition"
    # A member's objection was upheld on re-review: the case leaves the cycle.
    OBJECTION_UPHELD = "objection_upheld"
    # Received after the plan ended: diagnosed after its last day, or filed past the tail.
    AFTER_PLAN_END = "after_plan_end"


# What each reason means to the member who claimed, in a sentence (the API and the pages).
REASON_FOR_MEMBERS = {
    Reason.MALFORMED: "The application was incomplete or unreadable; please send it again.",
    Reason.UNKNOWN_MEMBER: "We could not find this member in the plan.",
    Reason.NOT_MEMBER_AT_DIAGNOSIS: "The illness was diagnosed when you were not in the plan.",
    Reason.NOT_COVERED: "This illness is not one of the conditions the plan covers.",
    Reason.DUPLICATE: "This application repeats one already received.",
    Reason.INSIDE_WAITING_PERIOD: (
        "The illness began inside the waiting period; the shares you paid are refunded."
    ),
    Reason.AGE_OUT_OF_PLAN: "At diagnosis your age was outside the plan's ages.",
    Reason.ALREADY_PAID: "The plan pays each member once, and you have been paid.",
    Reason.CRITERIA_NOT_MET: (
        "A reviewer found the case outside the plan's definition; you may ask for a jury."
    ),
    Reason.NO_HOSPITAL_RECORD: "The hospital has no record of this diagnosis.",
    Reason.NOT_CONFIRMED_BY_RECORDS: (
        "The hospital's records do not confirm the diagnosis; you may ask for a jury."
    ),
    Reason.UNDISCLOSED_CONDITION: (
        "The records show the illness before you joined; you may ask for a jury."
    ),
    Reason.OBJECTION_UPHELD: "A member's objection was upheld on re-review.",
    Reason.AFTER_PLAN_END: (
        "The plan has ended: it covers a first diagnosis on or before its last day, "
        "applied for within 180 days of the diagnosis."
    ),
}
# The same, as the member's pages say it in Chinese.
REASON_FOR_MEMBERS_ZH = {
    Reason.MALFORMED: "申请材料不完整或无法识别，请重新提交。",
    Reason.UNKNOWN_MEMBER: "在本计划中找不到这位成员。",
    Reason.NOT_MEMBER_AT_DIAGNOSIS: "确诊时您不在本计划中。",
    Reason.NOT_COVERED: "该疾病不在本计划保障的疾病范围内。",
    Reason.DUPLICATE: "该申请与已收到的申请重复。",
    Reason.INSIDE_WAITING_PERIOD: "疾病发生在等待期内；您已分摊的金额将退还。",
    Reason.AGE_OUT_OF_PLAN: "确诊时您的年龄不在本计划的年龄范围内。",
    Reason.ALREADY_PAID: "本计划每位成员只获助一次，您已获得过互助金。",
    Reason.CRITERIA_NOT_MET: "审核员认为病情不符合本计划的疾病定义；您可以申请赔审团评议。",
    Reason.NO_HOSPITAL_RECORD: "医院没有这次确诊的记录。",
    Reason.NOT_CONFIRMED_BY_RECORDS: "医院的记录不能证实该诊断；您可以申请赔审团评议。",
    Reason.UNDISCLOSED_CONDITION: "记录显示加入前已患该病；您可以申请赔审团评议。",
    Reason.OBJECTION_UPHELD: "有成员提出的异议经复核成立。",
    Reason.AFTER_PLAN_END: "计划已终止：仅保障终止日前首次确诊、并在确诊后180天内提出的申请。",
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: str, target: State) -> None:
    if target not in TRANSITIONS.get(State(current), set()):
        raise IllegalTransition(f"a claim cannot go from {current} to {target}")


# A regular expression, not a loop over characters: it runs on three fields of every row of a
# million-member import.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def printable(value: str) -> str:
    """Refuse control characters: never part of a real id, name or place, and PostgreSQL
    cannot store NUL at all."""
    if CONTROL_CHARACTERS.search(value):
        raise ValueError("contains control characters")
    return value


PRINTABLE = AfterValidator(printable)
Text = Annotated[str, Field(min_length=1, max_length=200), PRINTABLE]


class Submission(BaseModel):
    """One claim as a member submits it (one line of a claims file)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    submission_id: Annotated[str, Field(min_length=1, max_length=128), PRINTABLE]
    member_ref: Annotated[str, Field(min_length=1, max_length=64), PRINTABLE]
    plan: PlanCode
    icd10: str
    diagnosed_on: date
    hospital: Text
    accident: StrictBool

    @field_validator("icd10")
    @classmethod
    def _icd10_shape(cls, value: str) -> str:
        code = normalise_icd10(value)
        if code is None:
            raise ValueError("not an ICD-10 code (expected e.g. C34.1)")
        return code


def load_json(raw: str | bytes) -> tuple[object, str]:
    """The decoded JSON, or None and why it is not JSON (never an exception: input is hostile)."""
    try:
        return json.loads(raw), ""
    except json.JSONDecodeError as error:
        return None, f"not valid JSON ({error.msg} at character {error.pos})"
    except UnicodeDecodeError:
        return None, "not valid JSON (the bytes are not UTF-8)"
    except RecursionError:
        return None, "not valid JSON (nested too deeply)"


def parse_submission(raw: str, received_at: datetime) -> tuple[Submission | None, str]:
    """The validated submission, or None and a short, data-free explanation of what is wrong."""
    data, problem = load_json(raw)
    if problem:
        return None, problem
    if not isinstance(data, dict):
        return None, "a submission must be a JSON object"
    try:
        submission = Submission.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'submission'}: {e['msg']}" for e in error.errors()
        )
        return None, problems[:500]
    if submission.diagnosed_on > local_date(received_at):
        return None, "diagnosed_on: after the day the claim was received"
    return submission, ""


@dataclass(frozen=True)
class MemberFacts:
    """What the review needs to know of the member, whatever the storage."""

    birth_date: date
    joined_at: datetime
    exited_at: datetime | None
    already_paid: bool  # another claim of theirs in this plan was settled or paid
    other_live_claim: bool  # another is approved on its way to payment, or earlier and undecided


@dataclass(frozen=True)
class Decision:
    state: State
    reason: Reason | None = None
    detail: str = ""
    amount_fen: int | None = None
    illness_code: str | None = None


def review(
    icd10: str,
    diagnosed_on: date,
    accident: bool,
    member: MemberFacts,
    plan: Plan,
    catalog: Catalog,
    evidence: Evidence,
    after_end: str | None = None,
) -> Decision:
    """Decide a claim by the plan's rules and the hospital's records, or send it to a reviewer
    when they cannot decide. `after_end`: why a claim received after the plan ended is outside
    its tail (domain.winddown), judged first: no rule can cover it."""
    if after_end:
        return Decision(State.REJECTED, Reason.AFTER_PLAN_END, after_end)
    if diagnosed_on < local_date(member.joined_at) or (
        member.exited_at is not None and diagnosed_on >= local_date(member.exited_at)
    ):
        return Decision(
            State.REJECTED, Reason.NOT_MEMBER_AT_DIAGNOSIS, "diagnosed outside membership"
        )
    if member.already_paid:
        return Decision(State.REJECTED, Reason.ALREADY_PAID, "one payout per member per plan")
    if member.other_live_claim:
        return Decision(State.REJECTED, Reason.DUPLICATE, "another claim is already under way")
    diagnosis = catalog.find(icd10, plan.code)
    if diagnosis is None:
        return Decision(
            State.REJECTED, Reason.NOT_COVERED, f"{icd10} is not covered by {plan.code}"
        )
    illness = diagnosis.illness
    age = age_on(member.birth_date, diagnosed_on)
    amount = plan.amount_for(age, illness.severity)
    if amount is None:
        return Decision(
            State.REJECTED, Reason.AGE_OUT_OF_PLAN, f"age {age} at diagnosis is outside the plan"
        )
    decided = Decision(State.APPROVED, amount_fen=amount, illness_code=illness.code)
    # The waiting period is judged on the claim's own dates, before the records: an unreadable
    # record must not send a case to a person that the rules already reject.
    if diagnosed_on <= plan.waiting_period_ends(member.joined_at):
        if not (accident and plan.accident_exempt):
            return Decision(
                State.REJECTED,
                Reason.INSIDE_WAITING_PERIOD,
                "diagnosed inside the waiting period",
                illness_code=illness.code,
            )
        # The accident exemption holds only if the accident caused the illness: a person decides.
        return _to_reviewer(decided, "accident inside the waiting period: confirm the cause")
    if judged := _judge_records(evidence, icd10, diagnosed_on, decided, member, plan, catalog):
        return judged
    if illness.decided_by == "reviewer":
        return _to_reviewer(decided, f"{illness.code}: the definition needs a medical judgement")
    return decided


def _judge_records(
    evidence: Evidence,
    icd10: str,
    diagnosed_on: date,
    decided: Decision,
    member: MemberFacts,
    plan: Plan,
    catalog: Catalog,
) -> Decision | None:
    """A decision forced by the hospital's records, or None when they support the claim."""
    if evidence.reply == Reply.UNKNOWN_PATIENT:
        return Decision(State.REJECTED, Reason.NO_HOSPITAL_RECORD, "the hospital has no record")
    if evidence.reply == Reply.UNREADABLE:
        # Never a silent approval: a person reads what the hospital sent.
        return _to_reviewer(decided, f"the hospital's reply could not be read: {evidence.detail}")
    if tentative(evidence, icd10, diagnosed_on) and not confirms(evidence, icd10, diagnosed_on):
        return _to_reviewer(decided, "the hospital records the diagnosis as not yet confirmed")
    if not confirms(evidence, icd10, diagnosed_on):
        return Decision(
            State.REJECTED,
            Reason.NOT_CONFIRMED_BY_RECORDS,
            f"the records show no {icd10} diagnosed on {diagnosed_on}",
            illness_code=decided.illness_code,
        )
    assert decided.illness_code is not None
    joined_on = local_date(member.joined_at)
    if earlier := undisclosed(evidence, decided.illness_code, plan.code, catalog, joined_on):
        return Decision(
            State.REJECTED,
            Reason.UNDISCLOSED_CONDITION,
            f"{earlier.icd10} recorded on {earlier.onset}, before joining on {joined_on}",
            illness_code=decided.illness_code,
        )
    return None


def _to_reviewer(decided: Decision, why: str) -> Decision:
    return Decision(
        State.NEEDS_REVIEW,
        detail=why,
        amount_fen=decided.amount_fen,
        illness_code=decided.illness_code,
    )
