"""How the CLI speaks: JSON for scripts, rich tables for people, errors that say what to do."""

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker import proofkeys
from domain.accounts import account_of
from domain.models import SharingCycle
from domain.money import yuan
from domain.services.proofs import ProofKeys

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # messages stay whole for grep and logs
T = TypeVar("T")

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object for scripts.")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def fail(message: str, hint: str = "", code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}")
    if hint:
        errors.print(f"[yellow]what to do:[/] {hint}")
    raise typer.Exit(code)


def proof_keys() -> ProofKeys:
    """The proofs' secret and log key of these settings; on the fleet, a clear error if unset."""
    try:
        return proofkeys.proof_keys()
    except proofkeys.NotConfigured as error:
        fail(
            str(error),
            "export HUZHU_PROOF_SECRET (32+ characters) and HUZHU_LOG_KEY_FILE (the log's "
            "Ed25519 private key, PEM) as the fleet's cycle workers have them",
        )


def parse_moment(text: str, default_now: bool = False) -> datetime:
    """An ISO 8601 moment with its offset from an option; now when empty and allowed."""
    if not text and default_now:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{text!r} is not an ISO 8601 date-time", "write it like 2026-12-07T00:00:00+08:00")
    if parsed.tzinfo is None:
        fail(f"{text!r} has no timezone offset", "add one, e.g. +08:00 for Shanghai time")
    return parsed


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column, justify="right" if column.endswith("(yuan)") else "left")
    for row in rows:
        view.add_row(*(str(cell) for cell in row))
    return view


def kind_of(name: str) -> str:
    account = account_of(name)
    return account.kind if account else "unknown"


def accounts_table(balances: dict[str, int]) -> Table:
    """The ledger's accounts, each on its normal side: what the plan holds, owes and earned."""
    view = Table(title="the ledger's accounts", title_justify="left")
    view.add_column("account", no_wrap=True)
    view.add_column("kind")
    view.add_column("balance (yuan)", justify="right", no_wrap=True)
    view.add_column("meaning")
    for name, balance in balances.items():
        if name.startswith("pool:") and not balance:
            continue  # every closed cycle's pool is 0; one that is not is shown
        view.add_row(name, kind_of(name), yuan(balance), getattr(account_of(name), "meaning", ""))
    return view


def progress(quiet: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=errors,
        disable=quiet,
        transient=True,
    )


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` (a database read) until it answers, or fail saying who should have acted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.2)
    fail(
        f"{what} did not happen within {timeout:.0f} s",
        "make sure a worker consumes the queues: "
        "celery -A workers worker -Q intake,review,announce,cycle,payments",
    )


def cycle_figures(cycle: SharingCycle, money: dict[str, int] | None = None) -> dict[str, Any]:
    return (money or {}) | {
        "plan": cycle.plan,
        "cycle": cycle.id,
        "announce_on": cycle.announce_on.isoformat(),
        "charge_on": cycle.charge_on.isoformat(),
        "status": cycle.status,
        "sharing_members": cycle.sharing_members,
        "cases": cycle.cases,
        "aid_fen": cycle.aid_fen,
        "fee_fen": cycle.fee_fen,
        "surplus_in_fen": cycle.surplus_in_fen,
        "surplus_out_fen": cycle.surplus_out_fen,
        "share_fen": cycle.share_fen,
        "subsidy_fen": cycle.subsidy_fen,
        "platform_share_fen": cycle.platform_share_fen,
        "charged_fen": cycle.charged_fen,
    }


def cycle_table(figures: dict[str, Any]) -> Table:
    rows = [
        ["status", figures["status"]],
        ["announcement / charge day", f"{figures['announce_on']} / {figures['charge_on']}"],
        ["sharing members", f"{figures['sharing_members']:,}"],
        ["cases", figures["cases"]],
    ]
    # Until the close, the figures are what the announcement expects, not what was charged.
    expected = " (expected)" if figures["status"] in ("open", "announced") else ""
    for key, label in [
        ("aid_fen", "aid"),
        ("fee_fen", "management fee (8%)"),
        ("surplus_in_fen", "surplus carried in"),
        ("share_fen", f"share per member{expected}"),
        ("charged_fen", "charged to members"),
        ("subsidy_fen", "platform subsidy (caps)"),
        ("surplus_out_fen", "surplus carried out"),
    ]:
        rows.append([label, f"{yuan(figures[key])} yuan"])
    if figures["platform_share_fen"]:  # a plan winding down: the platform pays the cycle
        share = yuan(figures["platform_share_fen"])
        rows.append(["of which the wind-down's share", f"{share} yuan"])
    if "collected_fen" in figures:
        failed, patients = figures["debits_failed"], figures["payouts"]
        rows += [
            ["collected", f"{yuan(figures['collected_fen'])} yuan"],
            ["outstanding", f"{yuan(figures['outstanding_fen'])} yuan ({failed} debits failed)"],
            ["paid out", f"{yuan(figures['paid_out_fen'])} yuan to {patients} patients"],
        ]
    return table(f"{figures['plan']} cycle {figures['cycle']}", ["figure", "value"], rows)
