"""Plans as data: the two plans' numbers, joining ages, the waiting period and amounts."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain.plans import AmountBand, Plan, get_plan, load_plans, parse_plan

SHANGHAI = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def critical() -> Plan:
    return get_plan("critical-illness")


@pytest.fixture(scope="module")
def senior() -> Plan:
    return get_plan("senior-cancer")


def test_the_two_plans_load() -> None:
    assert set(load_plans()) == {"critical-illness", "senior-cancer"}


def test_critical_illness_has_the_published_numbers(critical: Plan) -> None:
    assert critical.amounts == (
        AmountBand(min_age=0, max_age=39, severity="severe", amount_fen=30_000_000),
        AmountBand(min_age=40, max_age=59, severity="severe", amount_fen=10_000_000),
    )
    assert critical.per_patient_cap_fen == 10
    assert critical.annual_cap_fen == 18_800
    assert critical.fee_rate_bp == 800
    assert critical.waiting_days == 90
    assert critical.accident_exempt is True
    assert critical.exit_age_years == 60
    assert critical.jury_min_votes == 1000


def test_senior_cancer_has_the_published_numbers(senior: Plan) -> None:
    assert senior.amounts == (
        AmountBand(min_age=60, max_age=70, severity="severe", amount_fen=10_000_000),
        AmountBand(min_age=60, max_age=70, severity="mild", amount_fen=5_000_000),
    )
    assert senior.per_patient_cap_fen == 100
    assert senior.annual_cap_fen == 18_800
    assert senior.fee_rate_bp == 800
    assert senior.waiting_days == 90


def test_get_plan_refuses_an_unknown_plan_and_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="critical-illness, senior-cancer"):
        get_plan("public-transport")


@pytest.mark.parametrize(
    ("birth", "on", "accepted"),
    [
        (date(2026, 1, 1), date(2026, 1, 30), False),  # 29 days old
        (date(2026, 1, 1), date(2026, 1, 31), True),  # 30 days old
        (date(1966, 6, 10), date(2026, 6, 9), True),  # 59, the day before turning 60
        (date(1966, 6, 10), date(2026, 6, 10), False),  # 60
    ],
)
def test_critical_illness_joins_from_30_days_to_59_years(
    critical: Plan, birth: date, on: date, accepted: bool
) -> None:
    assert critical.can_join_at_age(birth, on) is accepted


@pytest.mark.parametrize(
    ("birth", "accepted"),
    [
        (date(1966, 6, 11), False),  # 59
        (date(1966, 6, 10), True),  # 60
        (date(1956, 6, 10), True),  # 70
        (date(1955, 6, 10), False),  # 71
    ],
)
def test_senior_cancer_joins_from_60_to_70(senior: Plan, birth: date, accepted: bool) -> None:
    assert senior.can_join_at_age(birth, date(2026, 6, 10)) is accepted


def test_waiting_period_runs_90_days_from_the_day_after_joining(critical: Plan) -> None:
    joined = datetime(2026, 1, 1, 10, 0, tzinfo=SHANGHAI)
    assert critical.waiting_period_ends(joined) == date(2026, 4, 1)


def test_waiting_period_counts_a_late_evening_join_by_the_shanghai_date(critical: Plan) -> None:
    # 23:30 in Shanghai is 15:30 UTC on the same date; 00:30 the next day is 16:30 UTC.
    assert critical.waiting_period_ends(datetime(2026, 1, 1, 15, 30, tzinfo=UTC)) == date(
        2026, 4, 1
    )
    assert critical.waiting_period_ends(datetime(2026, 1, 1, 16, 30, tzinfo=UTC)) == date(
        2026, 4, 2
    )


@pytest.mark.parametrize(
    ("age", "amount"), [(0, 30_000_000), (39, 30_000_000), (40, 10_000_000), (59, 10_000_000)]
)
def test_critical_illness_pays_by_age_band(critical: Plan, age: int, amount: int) -> None:
    assert critical.amount_for(age, "severe") == amount


def test_amount_for_is_none_outside_the_bands(critical: Plan, senior: Plan) -> None:
    assert critical.amount_for(60, "severe") is None
    assert critical.amount_for(35, "mild") is None
    assert senior.amount_for(59, "severe") is None
    assert senior.amount_for(71, "mild") is None
    assert senior.amount_for(65, "mild") == 5_000_000


def raw_plan(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "code": "test-plan",
        "name_zh": "测试计划",
        "name_en": "Test plan",
        "min_join_age_years": 18,
        "max_join_age_years": 50,
        "exit_age_years": 51,
        "waiting_days": 30,
        "accident_exempt": False,
        "per_patient_cap_fen": 10,
        "annual_cap_fen": 10_000,
        "fee_rate_bp": 500,
        "objection_days": 7,
        "jury_request_days": 30,
        "jury_hours": 24,
        "jury_min_votes": 100,
        "payout_days": 7,
        "tail_days": 180,
        "review_escalate_hours": 48,
        "review_due_hours": 72,
        "second_review_from_fen": 30_000_000,
        "sample_rate_bp": 500,
        "sample_above_fen": 30_000_000,
        "investigation_due_days": 10,
        "amount": [{"min_age": 18, "max_age": 50, "severity": "severe", "amount_fen": 100}],
    }
    base.update(changes)
    return base


def test_parse_plan_builds_a_plan_and_defaults_the_minimum_age_in_days() -> None:
    plan = parse_plan(raw_plan())
    assert plan.code == "test-plan"
    assert plan.min_join_age_days == 0
    assert plan.amounts == (AmountBand(18, 50, "severe", 100),)


def one_band(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {"min_age": 18, "max_age": 50, "severity": "severe", "amount_fen": 1}
    entry.update(changes)
    return {"amount": [entry]}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (one_band(min_age=50, max_age=18), "bad amount band"),
        (one_band(amount_fen=0), "bad amount band"),
        (one_band(severity="grave"), "unknown severity 'grave'"),
        ({"amount": [{"min_age": 18, "max_age": 50, "severity": "mild"}]}, "missing"),
        (one_band(currency="CNY"), "unexpected"),
        ({"max_join_age_years": 51}, "before the exit age"),
    ],
)
def test_parse_plan_refuses_inconsistent_rules(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match="test-plan") as refused:
        parse_plan(raw_plan(**changes))
    assert problem in str(refused.value)


def test_parse_plan_refuses_a_missing_field_by_name() -> None:
    raw = raw_plan()
    del raw["waiting_days"]
    with pytest.raises(ValueError, match=r"test-plan.*missing.*waiting_days"):
        parse_plan(raw)
