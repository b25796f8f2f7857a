"""The Shanghai sharing calendar: announcement and charge days, local dates and ages."""

from datetime import UTC, date, datetime

import pytest

from domain.calendar import (
    add_years,
    age_on,
    announcement_day_on_or_before,
    charge_day,
    is_announcement_day,
    local_date,
    next_announcement_day,
    start_of_day,
)


@pytest.mark.parametrize(("day", "expected"), [(7, True), (21, True), (6, False), (14, False)])
def test_announcements_fall_on_the_7th_and_21st(day: int, expected: bool) -> None:
    assert is_announcement_day(date(2026, 3, day)) is expected


@pytest.mark.parametrize(
    ("announced", "charged"),
    [(date(2026, 3, 7), date(2026, 3, 14)), (date(2026, 2, 21), date(2026, 2, 28))],
)
def test_charge_day_is_a_week_after_the_announcement(announced: date, charged: date) -> None:
    assert charge_day(announced) == charged


def test_charge_day_refuses_a_day_that_is_not_an_announcement_day() -> None:
    with pytest.raises(ValueError, match="not an announcement day"):
        charge_day(date(2026, 3, 14))


@pytest.mark.parametrize(
    ("day", "announced"),
    [
        (date(2026, 3, 21), date(2026, 3, 21)),
        (date(2026, 3, 20), date(2026, 3, 7)),
        (date(2026, 3, 1), date(2026, 2, 21)),
        (date(2026, 1, 6), date(2025, 12, 21)),
    ],
)
def test_announcement_day_on_or_before_crosses_month_and_year_ends(
    day: date, announced: date
) -> None:
    assert announcement_day_on_or_before(day) == announced


@pytest.mark.parametrize(
    ("after", "announced"),
    [
        (date(2026, 3, 7), date(2026, 3, 21)),
        (date(2026, 2, 22), date(2026, 3, 7)),
        (date(2026, 12, 21), date(2027, 1, 7)),
    ],
)
def test_next_announcement_day_is_strictly_later(after: date, announced: date) -> None:
    assert next_announcement_day(after) == announced


def test_start_of_day_is_midnight_in_shanghai_which_is_16_00_utc_the_day_before() -> None:
    assert start_of_day(date(2026, 1, 1)) == datetime(2025, 12, 31, 16, 0, tzinfo=UTC)


def test_local_date_is_the_shanghai_date() -> None:
    assert local_date(datetime(2025, 12, 31, 15, 59, 59, tzinfo=UTC)) == date(2025, 12, 31)
    assert local_date(datetime(2025, 12, 31, 16, 0, tzinfo=UTC)) == date(2026, 1, 1)


def test_local_date_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        local_date(datetime(2026, 1, 1, 10, 0))


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(1990, 6, 10), date(2026, 6, 9), 35),  # the day before the birthday
        (date(1990, 6, 10), date(2026, 6, 10), 36),
        (date(2000, 2, 29), date(2001, 2, 28), 0),  # a 29 February birthday counts from 1 March
        (date(2000, 2, 29), date(2001, 3, 1), 1),
        (date(2000, 2, 29), date(2004, 2, 28), 3),
        (date(2000, 2, 29), date(2004, 2, 29), 4),
    ],
)
def test_age_on_counts_completed_years(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


@pytest.mark.parametrize(
    ("day", "years", "later"),
    [
        (date(2000, 2, 29), 1, date(2001, 3, 1)),
        (date(2000, 2, 29), 4, date(2004, 2, 29)),
        (date(2040, 2, 29), 60, date(2100, 3, 1)),  # 2100 is not a leap year
        (date(1966, 1, 15), 60, date(2026, 1, 15)),
    ],
)
def test_add_years_moves_29_february_to_1_march_when_needed(
    day: date, years: int, later: date
) -> None:
    assert add_years(day, years) == later
