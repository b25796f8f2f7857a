"""`huzhu simulate` and `huzhu forecast`: what members will pay, from the plan's own rules."""

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from broker.database import engine
from cli.output import JSON_OPTION, console, fail, print_json, progress, table
from domain.calendar import announcement_day_on_or_before, local_date, next_announcement_day
from domain.db import transaction
from domain.money import yuan
from domain.plans import get_plan, load_plans
from domain.services.forecast import forecast_share
from domain.simulation import Scenario, Simulation, simulate

# 相互宝's membership as published (reference/domain-research.md §5); the two points marked
# "estimate" are not published and only shape the curve between published ones.
XHB_GROWTH = (
    (date(2018, 10, 16), 0),
    (date(2018, 10, 26), 12_000_000),
    (date(2019, 1, 1), 30_000_000),  # estimate
    (date(2019, 3, 22), 40_000_000),
    (date(2019, 4, 30), 57_000_000),
    (date(2019, 6, 15), 72_000_000),
    (date(2019, 8, 7), 77_320_000),
    (date(2019, 9, 15), 89_000_000),
    (date(2019, 11, 27), 100_000_000),
    (date(2019, 12, 31), 104_000_000),  # estimate
)
FIRST_YEAR = (date(2018, 11, 27), date(2019, 11, 27))
FIRST_YEAR_CASES = 11_928
PUBLISHED = {"share_2019_fen": 2917, "cost_per_case_fen": 0.2, "aug_2019": (500, 77_320_000, 147)}


def xhb_2019(incidence: float, sample: int, seed: int) -> Scenario:
    return Scenario(
        plan=get_plan("critical-illness"),
        first_announcement=date(2018, 12, 7),
        cycles=26,
        growth=XHB_GROWTH,
        incidence=incidence,
        sample=sample,
        seed=seed,
    )


def calibrated(sample: int, seed: int, quiet: bool) -> tuple[Scenario, Simulation]:
    """Fit the incidence so the first year has 11,928 cases (cases grow in proportion to it)."""
    trial = _run(xhb_2019(2.5e-4, sample, seed), quiet)
    cases = sum(c.cases for c in trial.cycles if FIRST_YEAR[0] <= c.announce_on < FIRST_YEAR[1])
    scenario = xhb_2019(2.5e-4 * FIRST_YEAR_CASES / max(cases, 1), sample, seed)
    return scenario, _run(scenario, quiet)


def _run(scenario: Scenario, quiet: bool) -> Simulation:
    with progress(quiet) as bar:
        task = bar.add_task("simulating cycles", total=scenario.cycles)
        return simulate(scenario, lambda done: bar.update(task, completed=done))


def simulate_command(
    plan: Annotated[str, typer.Option("--plan", help="The plan to simulate.")] = "critical-illness",
    preset: Annotated[
        str, typer.Option("--preset", help="'xhb-2019': 相互宝's first years, calibrated.")
    ] = "",
    members: Annotated[int, typer.Option("--members", help="Members at the start.")] = 10_000_000,
    members_end: Annotated[
        int, typer.Option("--members-end", help="Members at the end (linear growth).")
    ] = 20_000_000,
    growth: Annotated[
        str,
        typer.Option("--growth", help="A growth curve instead: DATE:MEMBERS,DATE:MEMBERS,..."),
    ] = "",
    start: Annotated[str, typer.Option("--start", help="First announcement day, YYYY-MM-DD.")] = "",
    cycles: Annotated[int, typer.Option("--cycles", min=1, help="Cycles to run (24 a year).")] = 24,
    incidence: Annotated[
        float, typer.Option("--incidence", help="Covered cases per member-year.")
    ] = 2.4e-4,
    sample: Annotated[
        int, typer.Option("--sample", min=10, help="Members followed one by one.")
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    charts: Annotated[
        Path | None, typer.Option("--charts", help="Write PNG charts into this folder.")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="With the preset: compare with the published figures.")
    ] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run a plan over simulated time with the workers' own rules: the share formula and its
    caps, the calendar, the waiting period and the age bands."""
    if preset and preset != "xhb-2019":
        fail(f"unknown preset {preset!r}", "the preset is xhb-2019")
    if check and not preset:
        fail("--check compares a preset with the published figures", "add --preset xhb-2019")
    if preset:
        scenario, result = calibrated(sample, seed, as_json)
    else:
        if plan not in load_plans():
            fail(f"unknown plan {plan!r}", f"use one of: {', '.join(load_plans())}")
        first = date.fromisoformat(start) if start else next_announcement_day(date.today())
        first = announcement_day_on_or_before(first)
        end = first + timedelta(days=15 * cycles)
        scenario = Scenario(
            plan=get_plan(plan),
            first_announcement=first,
            cycles=cycles,
            # --members at the first announcement (members before it joined a year earlier).
            growth=_curve(growth)
            if growth
            else ((first - timedelta(days=365), members), (first, members), (end, members_end)),
            incidence=incidence,
            sample=sample,
            seed=seed,
            # The senior plan covers 60 to 70, a fifth of its cancers mild (an assumption).
            **({"age_mix": {(60, 70): 1.0}, "mild_share": 0.2} if plan == "senior-cancer" else {}),
        )
        result = _run(scenario, as_json)
    comparison = _comparison(result) if check else None
    if charts:
        _charts(result, scenario, charts)
    if as_json:
        print_json(
            {
                "incidence": scenario.incidence,
                "cycles": [dataclasses.asdict(c) for c in result.cycles],
                "years": {
                    y: {
                        "share_fen": s,
                        "max_member_fen": result.year_max_member_fen.get(y, 0),
                        "cases": result.year_cases[y],
                    }
                    for y, s in result.year_share_fen.items()
                },
                "check": comparison,
            }
        )
        return
    rows = [
        [
            c.announce_on,
            f"{c.members:,}",
            c.cases,
            c.rejected_in_waiting,
            yuan(c.aid_fen),
            yuan(c.fee_fen),
            yuan(c.share_fen),
            yuan(c.subsidy_fen),
        ]
        for c in result.cycles
    ]
    console.print(
        table(
            f"{scenario.plan.code}: incidence {scenario.incidence:.3g} cases per member-year",
            [
                "announced",
                "members",
                "cases",
                "in waiting",
                "aid (yuan)",
                "fee (yuan)",
                "share (yuan)",
                "subsidy (yuan)",
            ],
            rows,
        )
    )
    years = [
        [
            y,
            result.year_cases[y],
            yuan(s),
            yuan(result.year_max_member_fen.get(y, 0)),
            yuan(scenario.plan.annual_cap_fen),
        ]
        for y, s in sorted(result.year_share_fen.items())
    ]
    console.print(
        table(
            "per member per year",
            ["year", "cases", "share (yuan)", "most any member paid", "cap (yuan)"],
            years,
        )
    )
    if comparison:
        console.print(
            table(
                "simulated against published",
                ["figure", "simulated", "published", "ratio"],
                [[r["figure"], r["simulated"], r["published"], r["ratio"]] for r in comparison],
            )
        )


def _curve(text: str) -> tuple[tuple[date, int], ...]:
    try:
        points = [
            (date.fromisoformat(d), int(n)) for d, n in (p.split(":") for p in text.split(","))
        ]
    except ValueError:
        fail(
            f"{text!r} is not a growth curve",
            "write it like 2026-01-07:10000000,2026-12-21:20000000",
        )
    return tuple(sorted(points))


def _comparison(result: Simulation) -> list[dict]:
    cases = [c for c in result.cycles if c.cases]
    per_case = sum(c.aid_fen for c in cases) / max(sum(c.cases for c in cases), 1)
    cost_fen = per_case * 1.08 / 100_000_000
    aug = next(c for c in result.cycles if c.announce_on == date(2019, 8, 7))
    pub_cases, pub_members, pub_share = PUBLISHED["aug_2019"]
    rows = [
        (
            "2019 share per member (yuan)",
            result.year_share_fen.get(2019, 0) / 100,
            PUBLISHED["share_2019_fen"] / 100,
        ),
        (
            "one case's cost per member at 100M (yuan)",
            cost_fen / 100,
            PUBLISHED["cost_per_case_fen"] / 100,
        ),
        ("Aug 2019 first half: cases", aug.cases, pub_cases),
        ("Aug 2019 first half: members (millions)", aug.members / 1e6, pub_members / 1e6),
        ("Aug 2019 first half: share (yuan)", aug.share_fen / 100, pub_share / 100),
        ("average aid per case (yuan)", per_case / 100, 1_875_000_000 / FIRST_YEAR_CASES),
    ]
    return [
        {
            "figure": name,
            "simulated": round(sim, 4),
            "published": round(pub, 4),
            "ratio": round(sim / pub, 2) if pub else None,
        }
        for name, sim, pub in rows
    ]


def _charts(result: Simulation, scenario: Scenario, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    from matplotlib import pyplot

    folder.mkdir(parents=True, exist_ok=True)
    days = [c.charge_on for c in result.cycles]
    figure, axis = pyplot.subplots(figsize=(8, 4))
    axis.plot(days, [c.share_fen / 100 for c in result.cycles], marker="o")
    axis.set(title="Share per member per cycle", ylabel="yuan")
    figure.autofmt_xdate()
    figure.savefig(folder / "share-per-cycle.png", dpi=120, bbox_inches="tight")
    figure, axis = pyplot.subplots(figsize=(8, 4))
    for year in sorted(result.year_share_fen):
        total, xs, ys = 0, [], []
        for cycle in (c for c in result.cycles if c.charge_on.year == year):
            total += cycle.share_fen
            xs.append(cycle.charge_on.timetuple().tm_yday)
            ys.append(total / 100)
        axis.plot(xs, ys, marker=".", label=str(year))
    axis.axhline(
        scenario.plan.annual_cap_fen / 100, color="red", linestyle="--", label="188-yuan cap"
    )
    axis.set(
        title="Cumulative share in the year against the cap",
        xlabel="day of the year",
        ylabel="yuan",
    )
    axis.legend()
    figure.savefig(folder / "yearly-share-vs-cap.png", dpi=120, bbox_inches="tight")
    pyplot.close("all")


def forecast_command(
    plan: Annotated[str, typer.Option("--plan", help="The plan to forecast.")],
    as_json: bool = JSON_OPTION,
) -> None:
    """The next cycle's share from the cases in the pipeline: a low (only cases already
    approved), an expected and a high (every case under review approved) figure."""
    if plan not in load_plans():
        fail(f"unknown plan {plan!r}", f"use one of: {', '.join(load_plans())}")
    with transaction(engine()) as session:
        estimate = forecast_share(session, plan, local_date(datetime.now(UTC)))
    if as_json:
        print_json(estimate)
        return
    console.print(
        table(
            f"{plan}: next cycle ({estimate['announce_on']}), {estimate['members']:,} members",
            ["", "cases", "share (yuan)"],
            [
                [k, estimate[k]["cases"], yuan(estimate[k]["share_fen"])]
                for k in ("low", "expected", "high")
            ],
        )
    )
