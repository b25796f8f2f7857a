"""The simulation runs the plan's own rules: deterministic, within the caps, waiting periods."""

from datetime import date, timedelta

from cli.simulate import FIRST_YEAR, FIRST_YEAR_CASES, calibrated
from domain.plans import get_plan
from domain.simulation import Scenario, members_on, simulate

CRITICAL = get_plan("critical-illness")
START = date(2026, 1, 7)


def scenario(**changes) -> Scenario:
    base = {
        "plan": CRITICAL,
        "first_announcement": START,
        "cycles": 24,
        "growth": (
            (START - timedelta(days=400), 1_000_000),
            (START + timedelta(days=365), 2_000_000),
        ),
        "incidence": 2.4e-4,
        "sample": 200,
        "seed": 3,
    }
    return Scenario(**(base | changes))


def test_the_membership_follows_the_growth_curve():
    growth = ((date(2026, 1, 1), 100), (date(2026, 1, 11), 200))
    assert members_on(growth, date(2025, 12, 31)) == 0
    assert members_on(growth, date(2026, 1, 6)) == 150
    assert members_on(growth, date(2027, 1, 1)) == 200


def test_the_same_seed_gives_the_same_run():
    assert simulate(scenario()).cycles == simulate(scenario()).cycles
    assert simulate(scenario()).cycles != simulate(scenario(seed=4)).cycles


def test_every_cycle_runs_on_the_calendar_and_within_the_per_patient_cap():
    result = simulate(scenario())
    assert [c.announce_on.day for c in result.cycles[:4]] == [7, 21, 7, 21]
    assert all(c.charge_on == c.announce_on + timedelta(days=7) for c in result.cycles)
    assert all(c.share_fen <= c.cases * CRITICAL.per_patient_cap_fen for c in result.cycles)


def test_members_who_just_joined_are_inside_the_waiting_period():
    fresh = scenario(growth=((START - timedelta(days=20), 0), (START, 1_000_000)), cycles=1)
    [cycle] = simulate(fresh).cycles
    assert cycle.cases == 0 and cycle.rejected_in_waiting > 0


def test_nobody_pays_more_than_the_annual_cap_whatever_the_incidence():
    # An absurd incidence, so that the shares of the year pass 188 yuan.
    heavy = simulate(scenario(incidence=1.0, growth=((date(2020, 1, 1), 5_000),) * 2))
    assert max(heavy.year_share_fen.values()) > CRITICAL.annual_cap_fen  # the shares exceed it
    assert max(heavy.year_max_member_fen.values()) <= CRITICAL.annual_cap_fen  # members do not
    assert any(c.subsidy_fen for c in heavy.cycles)


def test_the_calibration_reproduces_the_first_year_case_count():
    _, result = calibrated(sample=100, seed=7, quiet=True)
    first_year = sum(
        c.cases for c in result.cycles if FIRST_YEAR[0] <= c.announce_on < FIRST_YEAR[1]
    )
    assert abs(first_year - FIRST_YEAR_CASES) / FIRST_YEAR_CASES < 0.05
