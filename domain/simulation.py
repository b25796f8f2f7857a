"""A plan over simulated time, through the same rules the workers apply: the calendar, the
waiting period, the amounts by age band, the share formula with its caps. Pure: no database,
no clock; a seed makes every run the same."""

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from domain.calendar import SHANGHAI, charge_day, next_announcement_day
from domain.plans import Plan
from domain.sharing import compute_share, member_charge

# Ages at diagnosis of the aided, first year (MISSION.md: born in the 1980s 36%, 1990s 14%,
# children under 12 2%); the rest spread over the other ages the plan covers.
AGE_MIX_2019 = {(0, 11): 2, (12, 19): 2, (20, 29): 14, (30, 39): 36, (40, 49): 26, (50, 59): 20}


@dataclass(frozen=True)
class Scenario:
    plan: Plan
    first_announcement: date
    cycles: int
    # Members of the plan over time: (date, members) points, linearly interpolated.
    growth: tuple[tuple[date, int], ...]
    # Covered cases per member-year, and the share of them that are mild (senior plan).
    incidence: float
    age_mix: dict[tuple[int, int], float] = field(default_factory=lambda: dict(AGE_MIX_2019))
    mild_share: float = 0.0
    # Representative members followed one by one (for each one's yearly total and the cap).
    sample: int = 2000
    seed: int = 7


@dataclass(frozen=True)
class CycleResult:
    announce_on: date
    charge_on: date
    members: int
    cases: int
    rejected_in_waiting: int
    aid_fen: int
    fee_fen: int
    share_fen: int
    subsidy_fen: int
    surplus_out_fen: int


@dataclass
class Simulation:
    cycles: list[CycleResult]
    # Per calendar year: the shares asked of a member present all year (before the annual cap),
    # and the most any sampled member actually paid (after it).
    year_share_fen: dict[int, int]
    year_max_member_fen: dict[int, int]
    year_cases: dict[int, int]


def members_on(growth: tuple[tuple[date, int], ...], day: date) -> int:
    days = [d for d, _ in growth]
    i = bisect_right(days, day)
    if i == 0:
        return growth[0][1] if day >= growth[0][0] else 0
    if i == len(growth):
        return growth[-1][1]
    (d0, n0), (d1, n1) = growth[i - 1], growth[i]
    return round(n0 + (n1 - n0) * (day - d0).days / (d1 - d0).days)


def _join_day(growth, rng: random.Random, before: date) -> date:
    """A join date drawn from the growth curve: the members on `before` joined in the order
    the curve says."""
    target = rng.random() * members_on(growth, before)
    low, high = growth[0][0], before
    while (high - low).days > 1:
        middle = low + (high - low) / 2
        if members_on(growth, middle) < target:
            low = middle
        else:
            high = middle
    return high


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 50:  # normal approximation, for speed at a hundred million members
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def simulate(scenario: Scenario, progress: Callable[[int], None] | None = None) -> Simulation:
    rng = random.Random(scenario.seed)
    plan = scenario.plan
    ages = list(scenario.age_mix)
    weights = list(scenario.age_mix.values())
    sample_joined = [
        _join_day(scenario.growth, rng, scenario.growth[-1][0]) for _ in range(scenario.sample)
    ]
    paid_in_year: dict[tuple[int, int], int] = {}
    results, surplus = [], 0
    announce_on = scenario.first_announcement
    previous = announce_on - timedelta(days=14)
    for number in range(scenario.cycles):
        members = members_on(scenario.growth, announce_on)
        mean_members = (members + members_on(scenario.growth, previous)) / 2
        expected = scenario.incidence * mean_members * (announce_on - previous).days / 365
        amounts, in_waiting = [], 0
        for _ in range(_poisson(rng, expected)):
            diagnosed = announce_on - timedelta(days=rng.randint(1, (announce_on - previous).days))
            joined = _join_day(scenario.growth, rng, diagnosed)
            joined_at = datetime.combine(joined, time(12), SHANGHAI)
            if diagnosed <= plan.waiting_period_ends(joined_at):
                in_waiting += 1  # rejected: inside the waiting period (and refunded)
                continue
            low, high = rng.choices(ages, weights)[0]
            severity = "mild" if rng.random() < scenario.mild_share else "severe"
            amount = plan.amount_for(rng.randint(low, high), severity)
            if amount:
                amounts.append(amount)
        figures = compute_share(
            amounts, members, surplus, plan.fee_rate_bp, plan.per_patient_cap_fen
        )
        year = charge_day(announce_on).year
        annual_subsidy = 0
        for index, joined in enumerate(sample_joined):
            if joined < announce_on:  # joined before 00:00 on the announcement day
                paid = paid_in_year.get((index, year), 0)
                charged = member_charge(figures.share_fen, paid, plan.annual_cap_fen)
                paid_in_year[(index, year)] = paid + charged
                annual_subsidy += figures.share_fen - charged
        scale = members / max(sum(1 for j in sample_joined if j < announce_on), 1)
        results.append(
            CycleResult(
                announce_on=announce_on,
                charge_on=charge_day(announce_on),
                members=members,
                cases=len(amounts),
                rejected_in_waiting=in_waiting,
                aid_fen=figures.aid_fen,
                fee_fen=figures.fee_fen,
                share_fen=figures.share_fen,
                subsidy_fen=figures.cap_subsidy_fen + round(annual_subsidy * scale),
                surplus_out_fen=figures.surplus_out_fen,
            )
        )
        surplus = figures.surplus_out_fen
        previous, announce_on = announce_on, next_announcement_day(announce_on)
        if progress:
            progress(number + 1)
    return _years(results, paid_in_year)


def _years(results: list[CycleResult], paid: dict[tuple[int, int], int]) -> Simulation:
    year_share: dict[int, int] = {}
    year_cases: dict[int, int] = {}
    for cycle in results:
        year = cycle.charge_on.year
        year_share[year] = year_share.get(year, 0) + cycle.share_fen
        year_cases[year] = year_cases.get(year, 0) + cycle.cases
    year_max: dict[int, int] = {}
    for (_, year), total in paid.items():
        year_max[year] = max(year_max.get(year, 0), total)
    return Simulation(results, year_share, year_max, year_cases)
