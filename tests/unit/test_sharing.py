"""The share formula: published figures, rounding, surplus, both caps, and the books balancing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.plans import get_plan
from domain.sharing import ShareFigures, annual_cap_can_bind, compute_share, member_charge

CRITICAL = get_plan("critical-illness")
YUAN = 100
CASE_300K = 300_000 * YUAN
CASE_100K = 100_000 * YUAN


def share(cases: list[int], members: int, surplus_in: int = 0, cap: int = 10) -> ShareFigures:
    return compute_share(cases, members, surplus_in, CRITICAL.fee_rate_bp, cap)


def test_mission_worked_example_charges_7_42_yuan_and_carries_300_000_yuan() -> None:
    figures = share([CASE_300K] * 1_716 + [CASE_100K] * 2, 75_000_000)
    assert figures == ShareFigures(
        sharing_members=75_000_000,
        cases=1_718,
        aid_fen=515_000_000 * YUAN,
        fee_fen=41_200_000 * YUAN,
        surplus_in_fen=0,
        collectable_fen=556_200_000 * YUAN,
        cap_subsidy_fen=0,
        share_fen=742,
        surplus_out_fen=300_000 * YUAN,
    )


def test_first_half_of_august_2019_charges_1_47_yuan() -> None:
    figures = share([CASE_300K] * 276 + [CASE_100K] * 224, 77_320_000)
    assert figures.aid_fen == 105_200_000 * YUAN
    assert figures.share_fen == 147
    assert figures.surplus_out_fen == 4_440_000


def test_research_toy_example_charges_5_fen_with_nothing_left_over() -> None:
    figures = share([CASE_300K, CASE_100K, CASE_100K], 10_800_000)
    assert (figures.aid_fen, figures.fee_fen) == (50_000_000, 4_000_000)
    assert (figures.share_fen, figures.surplus_out_fen) == (5, 0)


def test_share_under_one_fen_is_charged_one_fen_and_the_rest_carried() -> None:
    figures = share([CASE_100K], 75_000_000)  # 0.144 fen each
    assert (figures.share_fen, figures.surplus_out_fen) == (1, 64_200_000)


def test_surplus_carried_in_lowers_the_share() -> None:
    figures = share([CASE_300K, CASE_100K, CASE_100K], 10_800_000, surplus_in=10_800_000)
    assert (figures.share_fen, figures.surplus_out_fen) == (4, 0)


def test_surplus_that_covers_everything_makes_the_share_zero_and_keeps_the_rest() -> None:
    figures = share([CASE_300K, CASE_100K, CASE_100K], 10_800_000, surplus_in=60_000_000)
    assert (figures.share_fen, figures.surplus_out_fen) == (0, 6_000_000)


def test_with_no_members_the_platform_covers_aid_and_fee() -> None:
    figures = share([CASE_300K], 0, surplus_in=500)
    assert figures.collectable_fen == 0
    assert figures.cap_subsidy_fen == 32_400_000
    assert (figures.share_fen, figures.surplus_out_fen) == (0, 500)


def test_per_patient_cap_binds_with_few_members_and_the_platform_pays_the_rest() -> None:
    figures = share([CASE_300K], 1_000)
    assert figures.share_fen == 10
    assert figures.collectable_fen == 10_000
    assert figures.cap_subsidy_fen == 30_000_000 + 2_400_000 - 10 * 1_000
    assert figures.surplus_out_fen == 0


def test_per_patient_cap_applies_to_each_case_on_its_own() -> None:
    assert share([CASE_300K, CASE_300K], 1_000).share_fen == 20
    assert share([CASE_100K], 1_000, cap=100).share_fen == 100


@pytest.mark.parametrize(
    ("cases", "members", "surplus_in"), [([0], 10, 0), ([100], -1, 0), ([100], 10, -1)]
)
def test_compute_share_refuses_impossible_inputs(
    cases: list[int], members: int, surplus_in: int
) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        share(cases, members, surplus_in)


@pytest.mark.parametrize(
    ("share_fen", "paid", "charged"),
    [(5, 0, 5), (5, 18_797, 3), (5, 18_800, 0), (5, 18_900, 0), (742, 18_100, 700)],
)
def test_member_charge_stops_at_the_annual_cap(share_fen: int, paid: int, charged: int) -> None:
    assert member_charge(share_fen, paid, 18_800) == charged


@pytest.mark.parametrize(
    ("shares_this_year", "share_fen", "binds"),
    [(0, 742, False), (18_795, 5, False), (18_796, 5, True)],
)
def test_annual_cap_can_bind_only_when_the_years_shares_would_pass_it(
    shares_this_year: int, share_fen: int, binds: bool
) -> None:
    assert annual_cap_can_bind(shares_this_year, share_fen, 18_800) is binds


plans = st.sampled_from([CRITICAL, get_plan("senior-cancer")])
members_st = st.integers(0, 10**8)
cases_st = st.lists(st.integers(1, 30_000_000), max_size=50)
surplus_st = st.integers(0, 10**9)
paid_st = st.integers(0, 18_800)


@settings(max_examples=200)
@given(plans, members_st, cases_st, surplus_st, paid_st, st.lists(paid_st, max_size=5))
def test_every_fen_is_accounted_for_and_no_member_pays_past_a_cap(
    plan, members, cases, surplus_in, paid_by_most, paid_by_few
) -> None:
    figures = compute_share(cases, members, surplus_in, plan.fee_rate_bp, plan.per_patient_cap_fen)
    # N members: a few with their own year-to-date payments, the rest alike.
    paid = paid_by_few[:members]
    rest = members - len(paid)
    share_fen, cap = figures.share_fen, plan.annual_cap_fen
    charges = [member_charge(share_fen, p, cap) for p in paid]
    charge_of_rest = member_charge(share_fen, paid_by_most, cap)
    charged = sum(charges) + rest * charge_of_rest
    annual_subsidy = sum(share_fen - c for c in charges) + rest * (share_fen - charge_of_rest)

    assert charged + figures.cap_subsidy_fen + annual_subsidy == (
        figures.aid_fen + figures.fee_fen + figures.surplus_out_fen - figures.surplus_in_fen
    )
    for already, charge in [*zip(paid, charges, strict=True), (paid_by_most, charge_of_rest)]:
        assert 0 <= charge <= plan.per_patient_cap_fen * len(cases)
        assert already + charge <= cap
    assert figures.cap_subsidy_fen >= 0
    assert figures.surplus_out_fen >= 0


@settings(max_examples=200)
@given(plans, members_st, cases_st, surplus_st)
def test_share_is_at_least_a_fen_when_owed_and_never_over_collects_a_fen_each(
    plan, members, cases, surplus_in
) -> None:
    figures = compute_share(cases, members, surplus_in, plan.fee_rate_bp, plan.per_patient_cap_fen)
    owed = figures.collectable_fen > surplus_in and members > 0
    assert figures.share_fen <= plan.per_patient_cap_fen * len(cases)
    assert (figures.share_fen >= 1) is owed
    if owed:
        assert 0 <= figures.surplus_out_fen < members
        assert figures.share_fen * members == (
            figures.collectable_fen - surplus_in + figures.surplus_out_fen
        )
    else:
        assert figures.share_fen == 0
        assert figures.surplus_out_fen == surplus_in - figures.collectable_fen
