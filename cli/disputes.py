"""`huzhu announcements`, `huzhu objections` and `huzhu jury`: the transparent part of the plan."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from api.pages.render import announcement_html
from api.public import announcement_view
from broker.database import engine
from broker.submit import send_step
from cli.output import JSON_OPTION, console, fail, parse_moment, print_json, table, wait_for
from domain.db import transaction
from domain.money import yuan
from domain.plans import load_plans
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import disputes
from domain.services.announcements import announcement

announcements_app = typer.Typer(
    help="The public announcement (公示) of a cycle.", no_args_is_help=True
)
objections_app = typer.Typer(help="Objections to announced cases (我有异议).", no_args_is_help=True)
jury_app = typer.Typer(help="Dispute juries of members (赔审团).", no_args_is_help=True)

PlanOption = Annotated[str, typer.Option("--plan", help="Plan code, e.g. critical-illness.")]
CycleOption = Annotated[int | None, typer.Option("--cycle", help="Cycle id; default the latest.")]
AtOption = Annotated[
    str, typer.Option("--at", help="The moment, ISO 8601 with offset; default now.")
]
MemberOption = Annotated[str, typer.Option("--member", help="The member's reference.")]


def _announcement(plan: str, cycle_id: int | None):
    if plan not in load_plans():
        fail(f"unknown plan {plan!r}", f"use one of: {', '.join(load_plans())}")
    try:
        with transaction(engine()) as session:
            cycle = cycle_service.latest_cycle(session, plan, cycle_id)
            if cycle.status == cycle_service.CycleStatus.OPEN:
                fail(f"{plan} cycle {cycle.id} is not published yet", "publish it first")
            return announcement(session, cycle)
    except LookupError as error:
        fail(str(error))


@announcements_app.command("show")
def announcements_show(
    plan: PlanOption, cycle: CycleOption = None, as_json: bool = JSON_OPTION
) -> None:
    """The cases of a published cycle as every member sees them: masked, no records."""
    page = _announcement(plan, cycle)
    if as_json:
        print_json(
            {
                "plan": plan,
                "cycle": page.cycle.id,
                "announce_on": page.cycle.announce_on,
                "charge_on": page.cycle.charge_on,
                "expected_share_fen": page.cycle.share_fen,
                "sharing_members": page.cycle.sharing_members,
                "objections_until": page.objections_until,
                "cases": [case.__dict__ for case in page.cases],
            }
        )
        return
    rows = [
        [
            c.case_ref,
            c.masked_name,
            c.age,
            c.sex,
            c.province,
            c.illness,
            yuan(c.amount_fen),
            c.days_since_joining,
            yuan(c.shared_fen),
            c.status,
        ]
        for c in page.cases
    ]
    title = (
        f"公示 {plan} {page.cycle.announce_on}: expected share {yuan(page.cycle.share_fen)} yuan "
        f"from {page.cycle.sharing_members:,} members; objections until {page.objections_until}"
    )
    columns = [
        "case",
        "name",
        "age",
        "sex",
        "province",
        "illness",
        "aid (yuan)",
        "days a member",
        "shared so far (yuan)",
        "status",
    ]
    console.print(table(title, columns, rows))


@announcements_app.command("export")
def announcements_export(
    plan: PlanOption,
    html: Annotated[Path, typer.Option("--html", help="Where to write the page.")],
    cycle: CycleOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the announcement as a static page in Chinese, readable on a phone."""
    page = _announcement(plan, cycle)
    html.write_text(announcement_html(announcement_view(page)), encoding="utf-8")
    if as_json:
        print_json({"written": str(html), "cases": len(page.cases)})
    else:
        console.print(f"wrote {html} ({len(page.cases)} cases)")


@objections_app.command("file")
def objections_file(
    claim: Annotated[str, typer.Argument(help="The case: the claim's submission id.")],
    member: MemberOption,
    reason: Annotated[str, typer.Option("--reason", help="Why the case should not be paid.")],
    evidence: Annotated[str, typer.Option("--evidence", help="A link to the evidence.")] = "",
    at: AtOption = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """A member of the same plan objects to an announced case, once, inside the window; the
    case goes to re-review."""
    try:
        with transaction(engine()) as session:
            objection = disputes.file_objection(
                session, claim, member, reason, evidence, parse_moment(at, default_now=True)
            )
    except (claim_service.ClaimNotFound, disputes.Refused) as error:
        fail(str(error))
    if as_json:
        print_json({"objection": objection.id, "claim": claim, "status": objection.status})
    else:
        console.print(f"objection {objection.id} filed; case {claim} goes to re-review")


@objections_app.command("decide")
def objections_decide(
    objection: int,
    uphold: Annotated[bool, typer.Option("--uphold/--dismiss", help="The re-review's finding.")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="Who decides (recorded).")],
    note: Annotated[str, typer.Option("--note", help="Why, in a few words.")] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-review: upheld, the case leaves the cycle with a reason; dismissed, it stays."""
    try:
        with transaction(engine()) as session:
            decided = disputes.decide_objection(
                session, objection, uphold, reviewer, note, datetime.now(UTC)
            )
    except (LookupError, disputes.Refused) as error:
        fail(str(error).strip("'\""))
    if as_json:
        print_json({"objection": decided.id, "status": decided.status})
    else:
        console.print(f"objection {decided.id}: {decided.status}")


@jury_app.command("request")
def jury_request(
    claim: Annotated[str, typer.Argument(help="The rejected claim's submission id.")],
    at: AtOption = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """The applicant of a rejected claim asks for a jury of members."""
    try:
        with transaction(engine()) as session:
            case = disputes.request_jury(session, claim, parse_moment(at, default_now=True))
    except (claim_service.ClaimNotFound, disputes.Refused) as error:
        fail(str(error))
    if as_json:
        print_json({"case": case.id, "closes_at": case.closes_at, "min_votes": case.min_votes})
    else:
        console.print(f"jury case {case.id} votes until {case.closes_at.isoformat()}")


@jury_app.command("vote")
def jury_vote(
    case: int,
    member: MemberOption,
    support: Annotated[bool, typer.Option("--support/--oppose", help="Pay the claim, or not.")],
    at: AtOption = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """An eligible juror votes once: paying, 18 or older, certified, a member for 30 days,
    not the applicant or their family."""
    try:
        with transaction(engine()) as session:
            counted = disputes.cast_vote(
                session, case, member, support, parse_moment(at, default_now=True)
            )
    except (LookupError, disputes.Refused) as error:
        fail(str(error).strip("'\""))
    if as_json:
        print_json({"case": case, "counted": counted})
    elif counted:
        console.print("vote counted")
    else:
        console.print("already voted: the first vote stands")


@jury_app.command("close")
def jury_close(at: AtOption = "", timeout: float = 60.0, as_json: bool = JSON_OPTION) -> None:
    """Count the votes of every jury whose window has closed (what beat runs every 5 minutes)."""
    moment = parse_moment(at, default_now=True)
    send_step("close_juries", moment.isoformat())

    def counted() -> bool | None:
        with transaction(engine()) as session:
            return session.exec(disputes.due_juries(moment)).first() is None or None

    wait_for(counted, timeout, "counting the juries")
    jury_show(None, as_json)


@jury_app.command("show")
def jury_show(
    case: Annotated[int | None, typer.Argument(help="A case id; default every case.")] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Jury cases with their tally and outcome."""
    with transaction(engine()) as session:
        cases = disputes.jury_cases(session, case)
    data = [
        {
            "case": c.id,
            "claim": ref,
            "status": c.status,
            "support": c.support,
            "oppose": c.oppose,
            "min_votes": c.min_votes,
            "valid": c.valid,
            "approved": c.approved,
            "closes_at": c.closes_at.isoformat(),
        }
        for c, ref in cases
    ]
    if as_json:
        print_json(data)
        return
    columns = [
        "case",
        "claim",
        "status",
        "support",
        "oppose",
        "min_votes",
        "valid",
        "approved",
        "closes_at",
    ]
    console.print(table("juries", columns, [list(d.values()) for d in data]))
