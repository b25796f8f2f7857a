"""Plans as data: join ages, waiting period, amounts by age band and severity, caps and fee."""

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from domain.calendar import age_on, local_date
from domain.illnesses import SEVERITIES

PLANS_FILE = Path(__file__).parent / "data" / "plans.toml"


@dataclass(frozen=True)
class AmountBand:
    min_age: int
    max_age: int
    severity: str
    amount_fen: int


@dataclass(frozen=True)
class Plan:
    code: str
    name_zh: str
    name_en: str
    min_join_age_years: int
    min_join_age_days: int
    max_join_age_years: int
    exit_age_years: int
    waiting_days: int
    accident_exempt: bool
    per_patient_cap_fen: int
    annual_cap_fen: int
    fee_rate_bp: int
    objection_days: int
    jury_request_days: int
    jury_hours: int
    jury_min_votes: int
    payout_days: int  # a settled case is paid to the patient within this many days of the close
    tail_days: int  # after a wind-down's end: days from a diagnosis to file its claim (inclusive)
    review_escalate_hours: int  # a claim waiting this long for a person is escalated
    review_due_hours: int  # and must be decided by then (domain.review)
    second_review_from_fen: int  # an approval of this much or more needs a second reviewer
    sample_rate_bp: int  # the share of the rules' approvals drawn for a second look
    sample_above_fen: int  # and every one of more than this
    investigation_due_days: int  # an investigation's findings are due this long after it opens
    amounts: tuple[AmountBand, ...]

    def can_join_at_age(self, birth_date: date, on: date) -> bool:
        old_enough = (on - birth_date).days >= self.min_join_age_days and age_on(
            birth_date, on
        ) >= self.min_join_age_years
        return old_enough and age_on(birth_date, on) <= self.max_join_age_years

    def waiting_period_ends(self, joined_at: datetime) -> date:
        """Last day of the waiting period, counted from 00:00 the day after joining (day N in)."""
        return local_date(joined_at) + timedelta(days=self.waiting_days)

    def amount_for(self, age: int, severity: str) -> int | None:
        """The aid for a case, or None when the age or severity is outside the plan."""
        for band in self.amounts:
            if band.min_age <= age <= band.max_age and band.severity == severity:
                return band.amount_fen
        return None


def parse_plan(raw: dict) -> Plan:
    """Build a Plan from one [[plan]] table, refusing incomplete or inconsistent rules."""
    code = raw.get("code", "?")
    try:
        amounts = tuple(AmountBand(**band) for band in raw["amount"])
        plan = Plan(
            code=raw["code"],
            name_zh=raw["name_zh"],
            name_en=raw["name_en"],
            min_join_age_years=raw.get("min_join_age_years", 0),
            min_join_age_days=raw.get("min_join_age_days", 0),
            max_join_age_years=raw["max_join_age_years"],
            exit_age_years=raw["exit_age_years"],
            waiting_days=raw["waiting_days"],
            accident_exempt=raw["accident_exempt"],
            per_patient_cap_fen=raw["per_patient_cap_fen"],
            annual_cap_fen=raw["annual_cap_fen"],
            fee_rate_bp=raw["fee_rate_bp"],
            objection_days=raw["objection_days"],
            jury_request_days=raw["jury_request_days"],
            jury_hours=raw["jury_hours"],
            jury_min_votes=raw["jury_min_votes"],
            payout_days=raw["payout_days"],
            tail_days=raw["tail_days"],
            review_escalate_hours=raw["review_escalate_hours"],
            review_due_hours=raw["review_due_hours"],
            second_review_from_fen=raw["second_review_from_fen"],
            sample_rate_bp=raw["sample_rate_bp"],
            sample_above_fen=raw["sample_above_fen"],
            investigation_due_days=raw["investigation_due_days"],
            amounts=amounts,
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"plan {code!r}: missing or unexpected field ({error})") from error
    for band in amounts:
        if band.severity not in SEVERITIES:
            raise ValueError(f"plan {code!r}: unknown severity {band.severity!r}")
        if band.amount_fen <= 0 or band.min_age > band.max_age:
            raise ValueError(f"plan {code!r}: bad amount band {band}")
    if not 0 < plan.objection_days <= 7:
        # The window must close by the charge day, a week after the announcement.
        raise ValueError(f"plan {code!r}: objections must close by the charge day (1-7 days)")
    if plan.tail_days < 0:
        raise ValueError(f"plan {code!r}: tail_days must be 0 or more")
    if not 0 < plan.review_escalate_hours <= plan.review_due_hours:
        raise ValueError(f"plan {code!r}: a review is escalated (after > 0 hours) before it is due")
    if not 0 <= plan.sample_rate_bp <= 10_000:
        raise ValueError(f"plan {code!r}: sample_rate_bp must be 0 to 10,000 (100%)")
    if plan.investigation_due_days <= 0:
        raise ValueError(f"plan {code!r}: investigation_due_days must be more than 0")
    if plan.second_review_from_fen <= 0:
        raise ValueError(f"plan {code!r}: second_review_from_fen must be more than 0")
    if plan.max_join_age_years >= plan.exit_age_years:
        raise ValueError(f"plan {code!r}: members must be able to join before the exit age")
    return plan


@cache
def load_plans() -> dict[str, Plan]:
    raw = tomllib.loads(PLANS_FILE.read_text(encoding="utf-8"))
    plans = [parse_plan(entry) for entry in raw["plan"]]
    return {plan.code: plan for plan in plans}


def known_plan(code: str) -> str:
    if code not in load_plans():
        raise ValueError(f"unknown plan; expected one of {', '.join(load_plans())}")
    return code


# A plan code in a submission or an enrolment row, checked against plans.toml.
PlanCode = Annotated[str, AfterValidator(known_plan)]


def get_plan(code: str) -> Plan:
    plans = load_plans()
    if code not in plans:
        raise KeyError(f"unknown plan {code!r}; known plans: {', '.join(plans)}")
    return plans[code]
