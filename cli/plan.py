"""`huzhu plan`: winding a plan down the way 相互宝 did, and its final report."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from broker.database import engine
from cli.output import JSON_OPTION, console, fail, parse_moment, print_json, table
from domain.db import transaction
from domain.money import yuan
from domain.plans import load_plans
from domain.services import winddown

plan_app = typer.Typer(
    help="A plan as a whole: its wind-down and final report.", no_args_is_help=True
)

PlanOption = Annotated[str, typer.Option("--plan", help="Plan code, e.g. critical-illness.")]
MOMENT = "ISO 8601 with offset, e.g. 2021-12-28T00:00:00+08:00"


def _plan(code: str) -> str:
    if code not in load_plans():
        fail(f"unknown plan {code!r}", f"use one of: {', '.join(load_plans())}")
    return code


@plan_app.command("wind-down")
def wind_down(
    plan: PlanOption,
    announce_at: Annotated[
        str, typer.Option("--announce-at", help=f"T1: members stop sharing; {MOMENT}.")
    ],
    end_at: Annotated[str, typer.Option("--end-at", help=f"T2: the plan ends; {MOMENT}.")],
    refund_all_shares: Annotated[
        bool,
        typer.Option("--refund-all-shares", help="At the end, refund every share ever paid."),
    ] = False,
    at: Annotated[str, typer.Option("--at", help="The clock of the run; default now.")] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """Schedule the plan's wind-down: from T1 no one joins and the platform pays every cycle
    charged on or after T1's day; at T2 memberships end; a first diagnosis before T2 may still
    be claimed for the plan's tail days. Running it again with the same moments changes nothing."""
    moment = parse_moment(at, default_now=True)
    try:
        with transaction(engine()) as session:
            winddown.schedule(
                session,
                _plan(plan),
                parse_moment(announce_at),
                parse_moment(end_at),
                refund_all_shares,
                "cli",
                moment,
            )
    except winddown.Refused as error:
        fail(
            str(error),
            "give both moments with offsets, the end after the announcement; "
            f"`huzhu plan report --plan {plan}` shows a wind-down already scheduled",
        )
    _show(plan, moment, as_json)


@plan_app.command("report")
def report(
    plan: PlanOption,
    at: Annotated[str, typer.Option("--at", help="The clock of the run; default now.")] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """The wind-down's report: stage, dates, members at each stage, cases paid by members and by
    the platform, refunds, the last cycle members shared (brought up to the clock first)."""
    _show(_plan(plan), parse_moment(at, default_now=True), as_json)


def _show(plan: str, moment: datetime, as_json: bool) -> None:
    try:
        with transaction(engine()) as session:
            winddown.advance(session, plan, moment.astimezone(UTC))
            found = winddown.report(session, plan)
    except LookupError as error:
        fail(str(error))
    if as_json:
        return print_json(found)
    last = found["last_sharing_cycle"]
    rows = [
        ["stage", found["stage"]],
        ["announced (T1)", found["announce_at"]],
        ["ends (T2)", found["end_at"]],
        ["the platform pays cycles charged from", found["members_stop_sharing_on"]],
        ["last day a diagnosis is covered", found["last_covered_day"]],
        ["last day a tail claim can be filed", found["last_tail_day"]],
        ["every share refunded", "yes" if found["refund_all_shares"] else "no"],
        ["last cycle members shared", f"{last['cycle_id']} ({last['charge_on']})" if last else "-"],
        ["cases paid by members", found["cases_paid_by_members"]],
        ["aid shared by members (yuan)", yuan(found["aid_shared_by_members_fen"])],
        ["cases paid by the platform", found["cases_paid_by_platform"]],
        ["aid paid by the platform (yuan)", yuan(found["aid_paid_by_platform_fen"])],
        ["the platform's share (yuan)", yuan(found["platform_share_fen"])],
        ["refunds paid (yuan)", yuan(found["refunds_paid_fen"])],
        ["refunds pending (yuan)", yuan(found["refunds_pending_fen"])],
        ["refunds refused: a person must look (yuan)", yuan(found["refunds_failed_fen"])],
        ["members charged in all (yuan)", yuan(found["charged_to_members_fen"])],
        ["surplus left in the pool (yuan)", yuan(found["surplus_left_fen"])],
        ["claims still open", found["claims_open"]],
    ]
    rows += [[f"members: {reason}", n] for reason, n in found["members"].items()]
    console.print(table(f"{plan}: wind-down", ["", "value"], rows))
    console.print(
        table(
            "events",
            ["at", "stage", "what"],
            [[e["at"], e["kind"], e["detail"]] for e in found["events"]],
        )
    )
