"""`huzhu`: the operator's command for members, claims, sharing cycles, the audit and the demo."""

import csv
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import compress
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from broker.database import engine, upgrade
from broker.http import Unavailable
from broker.migrate import behind
from broker.submit import send_step, submit_claim
from cli import operations
from cli.demo import demo
from cli.disputes import announcements_app, jury_app, objections_app
from cli.entry import explain
from cli.fleet import fleet_app
from cli.investigate import investigate_app
from cli.output import (
    JSON_OPTION,
    accounts_table,
    console,
    cycle_figures,
    cycle_table,
    fail,
    kind_of,
    parse_moment,
    print_json,
    progress,
    proof_keys,
    table,
)
from cli.plan import plan_app
from cli.review import review_app
from cli.simulate import forecast_command, simulate_command
from cli.verify import verify_command
from domain.calendar import SHANGHAI
from domain.db import transaction
from domain.members import Applicant, Enrolment, quick_reader
from domain.money import yuan
from domain.plans import load_plans
from domain.services import archive as archive_service
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import members as member_service
from domain.services import payments as payment_service

app = typer.Typer(
    help="Huzhu (互助): claims and sharing cycles of an online mutual-aid plan.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
members_app = typer.Typer(help="Enrol and remove members.", no_args_is_help=True)
claims_app = typer.Typer(help="Submit and inspect claims.", no_args_is_help=True)
cycle_app = typer.Typer(help="Publish and close sharing cycles.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(members_app, name="members")
app.add_typer(claims_app, name="claims")
app.add_typer(cycle_app, name="cycle")
app.add_typer(announcements_app, name="announcements")
app.add_typer(objections_app, name="objections")
app.add_typer(jury_app, name="jury")
app.add_typer(fleet_app, name="fleet")
app.add_typer(plan_app, name="plan")
app.add_typer(review_app, name="review")
app.add_typer(investigate_app, name="investigate")
api_app = typer.Typer(help="The members' HTTP API.", no_args_is_help=True)
app.add_typer(api_app, name="api")
app.command("verify")(verify_command)

MEMBER_COLUMNS = ["member_ref", "plan", "birth_date", "sex", "province", "joined_at"]
OPTIONAL_COLUMNS = [
    "payer_ref",
    "name",
    "health_declaration",
    "credit_assessment",
    "jury_certified",
]
PROGRESS_STEP = 1_000  # rows between two moves of the import's progress bar
PlanOption = Annotated[str, typer.Option("--plan", help="Plan code, e.g. critical-illness.")]
AtOption = Annotated[
    str,
    typer.Option(
        "--at",
        help="The clock of the run, ISO 8601 with offset; `next`: the plan's next "
        "announcement day (publish) or its announced cycle's charge day (close), 00:00 Shanghai.",
    ),
]
WaitOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the workers; 0 sends and returns.")
]


def _shanghai(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _plan(code: str) -> str:
    if code not in load_plans():
        fail(f"unknown plan {code!r}", f"use one of: {', '.join(load_plans())}")
    return code


@db_app.command("upgrade")
def db_upgrade(as_json: bool = JSON_OPTION) -> None:
    """Create or upgrade the schema at HUZHU_DATABASE_URL (default: SQLite in huzhu-data/)."""
    try:
        url = upgrade()
    except OperationalError as error:
        if explain(error) is not None:
            raise  # a set-up mistake (unreachable, say): the entry point says so in two lines
        fail(
            f"the database refused the upgrade: {error.orig}",
            "check HUZHU_DATABASE_URL; a schema made without migrations must be recreated",
        )
    if as_json:
        print_json({"database": url, "upgraded": True})
    else:
        console.print(f"schema is up to date at [bold]{url}[/]")


@members_app.command("import")
def members_import(
    file: Annotated[Path, typer.Argument(help="CSV: " + ",".join(MEMBER_COLUMNS) + "[,payer_ref]")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Enrol members from a CSV file; bad rows are reported by line, good rows imported.

    Exit code 3 when some rows were refused (the others are imported)."""
    if not file.is_file():
        fail(f"{file} is not a file", "give the path of a CSV file with a header row")
    report = member_service.ImportReport()
    total = None if as_json else _data_lines(file)  # the bar's length; no bar for scripts
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = _header(file, next(reader, []))
        with progress(as_json) as bar:
            task = bar.add_task("importing members", total=total)
            rows = _enrolments(reader, header, lambda done: bar.advance(task, done))
            member_service.import_members(engine(), rows, report)
    refused = [{"line": line, "reason": reason} for line, reason in sorted(report.refused)]
    if as_json:
        print_json({"imported": report.imported, "refused": refused})
    else:
        console.print(f"imported [bold]{report.imported}[/] member(s)")
        if refused:
            console.print(
                table("refused rows", ["line", "reason"], [list(r.values()) for r in refused])
            )
    if refused:
        raise typer.Exit(3)


def _data_lines(file: Path) -> int:
    with file.open(encoding="utf-8-sig") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def _header(file: Path, header: list[str]) -> list[str]:
    missing = [c for c in MEMBER_COLUMNS if c not in header]
    unknown = [c for c in header if c not in MEMBER_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        fail(
            f"{file}: missing column(s) {', '.join(missing) or '-'}; "
            f"unknown column(s) {', '.join(unknown) or '-'}",
            "the header holds "
            + ",".join(MEMBER_COLUMNS)
            + " and may add "
            + ",".join(OPTIONAL_COLUMNS),
        )
    return header


def _enrolments(
    reader, header: list[str], advance: Callable[[int], None]
) -> Iterator[tuple[int, Applicant | Enrolment | str]]:
    """Each row as (line, enrolment or why not); an empty field is left out, so it takes its
    default. The bar moves every PROGRESS_STEP rows, not a million times; the import may run
    this in a thread of its own, which rich's progress bar allows."""
    count = 0
    quick = quick_reader(header, load_plans())
    for count, row in enumerate(reader, 1):
        if count % PROGRESS_STEP == 0:
            advance(PROGRESS_STEP)
        if not row:
            continue  # a blank line, which csv.DictReader skipped too
        # line_num is read as each row is consumed: the line where that row ends.
        yield reader.line_num, quick(row) or _enrolment(header, row)
    advance(count % PROGRESS_STEP)


def _enrolment(header: list[str], row: list[str]) -> Enrolment | str:
    """The row as the model reads it, or every reason it is refused."""
    if len(row) > len(header):
        return "more fields than the header has columns"
    fields = dict(compress(zip(header, row, strict=False), row))  # the non-empty ones
    if len(row) < len(header):
        fields.update(dict.fromkeys(header[len(row) :]))  # as csv.DictReader gave them: None
    try:
        return Enrolment.model_validate(fields)
    except ValidationError as error:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())


@members_app.command("exit")
def members_exit(
    member_ref: str, plan: PlanOption, at: AtOption = "", as_json: bool = JSON_OPTION
) -> None:
    """A member leaves the plan voluntarily (no refund; a member of the last cut-off still pays)."""
    moment = parse_moment(at, default_now=True)
    try:
        with transaction(engine()) as session:
            member = member_service.exit_member(session, _plan(plan), member_ref, moment)
    except (LookupError, ValueError) as error:
        fail(str(error).strip("'\""))
    if as_json:
        print_json({"member_ref": member_ref, "plan": plan, "exited_at": member.exited_at})
    else:
        console.print(f"{member_ref} left {plan} at {member.exited_at.isoformat()}")


@members_app.command("settle")
def members_settle(member_ref: str, plan: PlanOption, as_json: bool = JSON_OPTION) -> None:
    """Debit a member's arrears now: every unpaid charge on the account that pays for them
    (their own and their family's), each under a new idempotency key."""
    try:
        settled = operations.settle_arrears(_plan(plan), member_ref)
    except LookupError as error:
        fail(str(error).strip("'\""), "check the member reference and the plan")
    except Unavailable as error:
        fail(f"the payment provider did not answer ({error})", "try again later")
    if as_json:
        print_json(settled)
    elif not settled["debits"]:
        console.print(f"{member_ref} has no arrears in {plan}")
    else:
        console.print(
            f"{member_ref}: collected {yuan(settled['collected_fen'])} yuan; "
            f"{settled['still_unpaid']} of {settled['debits']} debits still unpaid"
        )
    if settled["still_unpaid"]:
        raise typer.Exit(4)


@claims_app.command("submit")
def claims_submit(
    file: Annotated[Path, typer.Argument(help="JSON Lines, one submission per line.")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Enqueue claims: each line is stored as received and its chain sent to the workers.

    A line that is not a valid submission is kept and rejected with its reason by the intake
    worker; the same submission_id twice makes one claim."""
    if not file.is_file():
        fail(f"{file} is not a file", "give the path of a .jsonl file")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        fail(f"{file} is not UTF-8 (byte {error.start})", "save the claims file as UTF-8")
    # Only a newline ends a line: JSON strings may hold U+2028 and other separators.
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    repeated = []
    with progress(as_json) as bar:
        task = bar.add_task("submitting claims", total=len(lines))
        for number, line in lines:
            if not submit_claim(line).created:
                repeated.append(number)
            bar.advance(task)
    created = len(lines) - len(repeated)
    if as_json:
        print_json(
            {
                "submitted": len(lines),
                "new_claims": created,
                "already_known": len(repeated),
                "already_known_lines": repeated,
            }
        )
        return
    console.print(
        f"submitted {len(lines)} line(s): {created} new claim(s). Workers take it from here; "
        "follow one with `huzhu claims show SUBMISSION_ID`."
    )
    if repeated:
        console.print(
            f"line(s) {', '.join(map(str, repeated))} repeat a submission already received: the "
            "first one stands. Send a correction under a new submission_id."
        )


@claims_app.command("show")
def claims_show(submission_id: str, as_json: bool = JSON_OPTION) -> None:
    """A claim's state, reason, amount and full history."""
    try:
        with transaction(engine()) as session:
            view = claim_service.claim_history(session, submission_id)
    except claim_service.ClaimNotFound as error:
        fail(str(error), "check the submission_id of the claims file")
    claim = view.claim
    data = {
        "submission_id": claim.submission_id,
        "state": claim.state,
        "reason_code": claim.reason_code,
        "reason_detail": claim.reason_detail,
        "plan": claim.plan,
        "illness": claim.illness_code,
        "amount_fen": claim.amount_fen,
        "cycle": claim.cycle_id,
        "history": [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "from": e.from_state,
                "to": e.to_state,
                "reason": e.reason,
            }
            for e in view.events
        ],
    }
    if as_json:
        print_json(data)
        return
    amount = f"{yuan(claim.amount_fen)} yuan" if claim.amount_fen else "-"
    console.print(
        f"[bold]{claim.submission_id}[/]: {claim.state} {claim.reason_code or ''}  amount {amount}"
    )
    rows = [
        [h["at"], h["actor"], h["from"] or "", h["to"], h["reason"] or ""] for h in data["history"]
    ]
    console.print(table("history", ["at", "actor", "from", "to", "why"], rows))


@cycle_app.command("publish")
def cycle_publish(
    plan: PlanOption, at: AtOption, timeout: WaitOption = 60.0, as_json: bool = JSON_OPTION
) -> None:
    """Publish the announcement (what beat runs on the 7th and 21st), with an explicit clock."""
    moment = operations.next_moment(_plan(plan), "publish") if at == "next" else parse_moment(at)
    if timeout <= 0:
        send_step("publish_announcements", _plan(plan), moment.isoformat())
        return _sent(as_json, plan, "publish_announcements")
    _show_cycle(operations.publish_and_wait(_plan(plan), moment, timeout), as_json)


@cycle_app.command("close")
def cycle_close(
    plan: PlanOption, at: AtOption, timeout: WaitOption = 300.0, as_json: bool = JSON_OPTION
) -> None:
    """Close the cycle whose charge day it is (what beat runs on the 14th and 28th)."""
    try:
        moment = operations.next_moment(_plan(plan), "close") if at == "next" else parse_moment(at)
    except cycle_service.NothingToClose as error:
        fail(str(error), "publish one first with `huzhu cycle publish --at next`")
    if timeout <= 0:
        send_step("close_cycle", _plan(plan), moment.isoformat())
        return _sent(as_json, plan, "close_cycle")
    try:
        cycle = operations.close_and_wait(_plan(plan), moment, timeout, quiet=as_json)
    except cycle_service.NothingToClose as error:
        fail(str(error))
    _show_cycle(cycle, as_json)


def _sent(as_json: bool, plan: str, task: str) -> None:
    if as_json:
        print_json({"sent": task, "plan": plan})
    else:
        console.print(f"sent {task} for {plan}; follow it with `huzhu cycle show --plan {plan}`")


@cycle_app.command("show")
def cycle_show(
    plan: PlanOption,
    cycle: Annotated[
        int | None, typer.Option("--cycle", help="Cycle id; default the latest.")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """A cycle's status and figures."""
    try:
        with transaction(engine()) as session:
            found = cycle_service.latest_cycle(session, _plan(plan), cycle)
    except LookupError as error:
        fail(str(error))
    _show_cycle(found, as_json)


@cycle_app.command("archive")
def cycle_archive(
    cycle: Annotated[int, typer.Argument(help="Cycle id (see `huzhu cycle show`).")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Detach an old cycle's charges from the live table (PostgreSQL), to dump and drop them.

    Only a closed cycle that is fully collected and audits clean; the live cycle is untouched."""
    try:
        done = archive_service.archive_charges(engine(), cycle, datetime.now(UTC), proof_keys())
    except LookupError as error:
        fail(str(error).strip("'\""), "list the cycles with `huzhu cycle show --plan P`")
    except ValueError as error:
        fail(str(error), "archive closed cycles of past years on the fleet's PostgreSQL")
    if as_json:
        print_json(done.__dict__)
        return
    console.print(
        f"cycle {done.cycle_id}: {done.rows:,} charges detached into table [bold]{done.table}[/]"
    )
    console.print(
        f"keep it with `pg_dump --table={done.table} --format=custom --file={done.table}.dump`,"
        f" then `DROP TABLE {done.table}`"
    )


def _show_cycle(cycle, as_json: bool) -> None:
    with transaction(engine()) as session:
        money = payment_service.money_figures(session, cycle.id)
    figures = cycle_figures(cycle, money)
    if as_json:
        print_json(figures)
    else:
        console.print(cycle_table(figures))


@app.command("audit")
def audit(as_json: bool = JSON_OPTION) -> None:
    """Check the books: every closed cycle balances to the fen, every ledger account holds what
    its name says (cash, receivables, aid payable, subsidy due, surplus, fee, refunds), every
    settled case is paid in time, every waiting-period rejection refunded, every claim took each
    step once; exit 1 with the reasons if not."""
    with transaction(engine()) as session:
        report = audit_service.audit(session, datetime.now(UTC), keys=proof_keys())
    if as_json:
        print_json(
            {
                "balanced": report.balanced,
                "cycles": len(report.cycles),
                "problems": report.problems,
                "attention": report.attention,
                "claims": report.claims,
                "accounts": {
                    name: {"kind": kind_of(name), "balance_fen": balance}
                    for name, balance in report.accounts.items()
                },
            }
        )
    elif report.balanced:
        console.print(
            f"[green]balanced[/]: {len(report.cycles)} closed cycle(s) check out to the fen; "
            f"{sum(report.claims.values())} claim(s), each step taken once: "
            + ", ".join(f"{n} {state}" for state, n in report.claims.items())
        )
        console.print(accounts_table(report.accounts))
        if report.attention:
            console.print(table("needs a person", ["what"], [[a] for a in report.attention]))
    else:
        console.print(
            table("the books do not balance", ["problem"], [[p] for p in report.problems])
        )
    if not report.balanced:
        raise typer.Exit(1)


app.command("demo")(demo)
app.command("simulate")(simulate_command)
app.command("forecast")(forecast_command)


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
    clock_at: Annotated[
        str,
        typer.Option(
            "--clock-at",
            help="Rehearsal: the API's clock starts at this moment (ISO 8601 with offset), "
            "e.g. inside an announcement's objection week. Never on the fleet.",
        ),
    ] = "",
) -> None:
    """Serve the members' API (OpenAPI at /openapi.json, docs at /docs). On the embedded
    default a worker runs in this process and tokens are minted with `huzhu api token`."""
    import uvicorn

    from api.app import create_app
    from api.auth import NotConfigured
    from broker.settings import get_settings, use_settings

    if clock_at:
        ahead = (parse_moment(clock_at) - datetime.now(UTC)).total_seconds() / 86400
        use_settings(get_settings().model_copy(update={"api_clock_offset_days": ahead}))
    try:
        served = create_app()
    except NotConfigured as error:
        fail(str(error), "set HUZHU_API_PUBLIC_KEY_FILE to the platform's public key (PEM)")
    if behind(engine()):
        fail(
            "the database has no schema, or one older than this version of Huzhu",
            "run `huzhu db upgrade`",
        )
    console.print(f"serving the members' API on http://127.0.0.1:{port} (docs: /docs)")
    login = "log in with a member_ref" if get_settings().embedded else "the platform logs in"
    console.print(f"the members' pages: http://127.0.0.1:{port}/app ({login})")
    if offset := get_settings().api_clock_offset_days:
        console.print(f"[yellow]rehearsal: the API's clock runs {offset:.1f} days ahead[/yellow]")
    options = {"host": "127.0.0.1", "port": port, "log_level": "warning", "access_log": False}
    if not get_settings().embedded:  # the fleet's workers take the claims
        uvicorn.run(served, **options)
        return
    with operations.worker_in_this_process():  # the embedded default's one worker
        uvicorn.run(served, **options)


@api_app.command("token")
def api_token(
    member_ref: Annotated[str, typer.Argument(help="The member the token is for (its sub).")],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="A staff role: reviewer, investigator or operator."),
    ] = None,
    minutes: Annotated[int, typer.Option(help="Minutes until it expires.")] = 60,
    as_json: bool = JSON_OPTION,
) -> None:
    """Mint a development token, signed with the embedded default's own key: only that
    default trusts it (the fleet checks the platform's tokens)."""
    from api.auth import NotConfigured, mint
    from broker.settings import get_settings

    try:
        token = mint(get_settings(), member_ref, set(role or []), minutes)
    except NotConfigured as error:
        fail(str(error), "on the fleet, members' tokens come from the platform")
    except ValueError as error:
        fail(str(error), "use --role reviewer or --role operator")
    if as_json:
        print_json({"token": token, "member_ref": member_ref, "minutes": minutes})
    else:
        sys.stdout.write(token + "\n")
