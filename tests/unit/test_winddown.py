"""The wind-down's rules, pure: 相互宝's own dates, then each rule against any moment and any
offset (the rules read the calendar in Shanghai, whatever offset a moment is written in)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.calendar import SHANGHAI, local_date, start_of_day
from domain.sharing import compute_share
from domain.winddown import MAX_NOTICE, Stage, WindDown, schedule_refusal, stage_due

T1 = datetime(2021, 12, 28, 0, 0, tzinfo=SHANGHAI)
T2 = datetime(2022, 1, 29, 0, 0, tzinfo=SHANGHAI)  # 2022-01-28 24:00
XIANGHUBAO = WindDown("critical-illness", T1, T2, tail_days=180)

OFFSETS = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@st.composite
def wind_downs(draw) -> WindDown:
    announce_at = draw(MOMENTS).astimezone(draw(OFFSETS))
    notice = draw(st.timedeltas(timedelta(minutes=1), MAX_NOTICE))
    tail_days = draw(st.integers(0, 400))
    return WindDown("critical-illness", announce_at, announce_at + notice, tail_days)


def test_xianghubaos_dates():
    assert XIANGHUBAO.sharing_stops_on == date(2021, 12, 28)  # the debit due that day: platform
    assert XIANGHUBAO.last_covered_day == date(2022, 1, 28)
    assert XIANGHUBAO.last_tail_day == date(2022, 7, 27)
    shuidi = datetime(2021, 3, 31, 18, 0, tzinfo=SHANGHAI)  # 水滴互助 closed at 18:00
    assert WindDown(
        "critical-illness", shuidi - timedelta(days=30), shuidi, 180
    ).last_covered_day == date(2021, 3, 30)
    assert not XIANGHUBAO.platform_pays(date(2021, 12, 27))
    assert XIANGHUBAO.platform_pays(date(2021, 12, 28))


@pytest.mark.parametrize(
    ("diagnosed", "received", "refused"),
    [
        ("2022-01-28", "2022-01-29", None),  # day 1 of the tail
        ("2022-01-20", "2022-07-19", None),  # day 180, the last
        ("2022-01-20", "2022-07-20", "after 2022-07-19"),  # day 181
        ("2022-01-29", "2022-01-30", "after the plan ended on 2022-01-28"),
        ("2021-06-01", "2022-01-28", None),  # before the end: the ordinary rules alone
    ],
)
def test_a_tail_claim_is_taken_up_to_the_180th_day_from_its_diagnosis(diagnosed, received, refused):
    moment = datetime.fromisoformat(received).replace(hour=23, minute=59, tzinfo=SHANGHAI)
    why = XIANGHUBAO.tail_refusal(date.fromisoformat(diagnosed), moment)
    assert why is None if refused is None else refused in why


@given(wind_downs())
def test_the_last_covered_day_is_the_last_whole_day_before_the_end(ending):
    """As a membership ending at T2 covers it: a diagnosis on the end's own day is not."""
    last = ending.last_covered_day
    after = start_of_day(last + timedelta(days=1))
    assert after <= ending.end_at < after + timedelta(days=1)
    assert ending.last_tail_day - last == timedelta(days=ending.tail_days)


@given(wind_downs(), MOMENTS, OFFSETS)
def test_joining_stops_at_the_announcement_and_sharing_on_its_day(ending, moment, offset):
    at = moment.astimezone(offset)
    assert ending.accepts_members(at) == (at < ending.announce_at)
    day = local_date(at)
    assert ending.platform_pays(day) == (day >= local_date(ending.announce_at))


@given(wind_downs(), st.dates(date(2019, 1, 1), date(2031, 1, 1)), MOMENTS, OFFSETS)
def test_after_the_end_a_claim_is_refused_exactly_outside_the_tail(ending, diagnosed, moment, tz):
    received = moment.astimezone(tz)
    why = ending.tail_refusal(diagnosed, received)
    outside = diagnosed > ending.last_covered_day or local_date(received) > diagnosed + timedelta(
        days=ending.tail_days
    )
    assert (why is not None) == (received >= ending.end_at and outside)


@given(wind_downs(), MOMENTS, st.booleans(), st.booleans())
def test_the_stages_follow_the_clock_and_never_settle_with_anything_open(
    ending, moment, closed, settled
):
    stage = stage_due(ending, moment, closed, settled)
    order = list(Stage)
    later = stage_due(ending, moment + timedelta(days=30), closed, settled)
    assert order.index(later) >= order.index(stage)  # never back
    if stage is Stage.SETTLED:
        assert closed and settled and local_date(moment) > ending.last_tail_day
    if moment >= ending.end_at and not closed:
        assert stage is Stage.ENDED


def test_a_schedule_needs_offsets_order_and_a_bounded_notice():
    now = T1 - timedelta(days=2)
    assert schedule_refusal(T1, T2, now) is None
    assert "timezone" in schedule_refusal(T1.replace(tzinfo=None), T2, now)
    assert "after the announcement" in schedule_refusal(T2, T1, now)
    assert "after the announcement" in schedule_refusal(T1, T1, now)
    assert "366 days after" in schedule_refusal(T1, T1 + MAX_NOTICE + timedelta(seconds=1), now)
    assert "in the past" in schedule_refusal(T1, T2, T1 + timedelta(days=2))
    assert "days ahead" in schedule_refusal(T1, T2, T1 - MAX_NOTICE - timedelta(days=1))


@given(
    st.lists(st.integers(1, 40_000_000), max_size=20),
    st.integers(0, 10_000_000),
    st.integers(0, 5_000_000_000),
)
def test_when_the_platform_pays_no_member_pays_and_nothing_is_lost(cases, members, surplus):
    figures = compute_share(cases, members, surplus, 800, 10, platform_pays=True)
    assert figures.share_fen == 0 and figures.cap_subsidy_fen == 0
    # The cycle is covered in full, even with nobody left to share: the surplus first, then
    # the platform; what the surplus does not use carries.
    needed = figures.aid_fen + figures.fee_fen - surplus
    assert figures.platform_share_fen - figures.surplus_out_fen == needed
    assert min(figures.platform_share_fen, figures.surplus_out_fen) == 0
