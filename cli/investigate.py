"""`huzhu investigate`: cases for flagged or disputed claims. Open one, assign it to an
investigator (staff, or an outside firm's), add notes and evidence files (kept by their hash,
outside the database), and file the findings that send the claim back to a reviewer."""

import mimetypes
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from broker.database import engine
from broker.evidence import EvidenceCorrupt, EvidenceMissing, evidence_store
from cli.output import JSON_OPTION, console, fail, print_json, table
from domain.claims import Reason
from domain.db import transaction
from domain.investigations import Finding
from domain.models import Claim, Investigation
from domain.plans import load_plans
from domain.services import claims as claim_service
from domain.services import investigations, review

investigate_app = typer.Typer(
    help="Investigations of flagged or disputed claims: cases, notes, evidence, findings.",
    no_args_is_help=True,
)
CaseArgument = Annotated[int, typer.Argument(help="The case's number (`huzhu investigate list`).")]
InvestigatorOption = Annotated[
    str, typer.Option("--investigator", help="Who you are: the case's investigator (recorded).")
]
HINT = "`huzhu investigate show CASE` shows who holds the case and whether it is open"


def case_row(case: Investigation, submission_id: str, now: datetime) -> dict:
    return {
        "case": case.id,
        "submission_id": submission_id,
        "plan": case.plan,
        "cause": case.cause,
        "why": case.why,
        "opened_by": case.opened_by,
        "opened_at": case.opened_at.isoformat(),
        "due_at": case.due_at.isoformat(),
        "overdue": case.closed_at is None and now >= case.due_at,
        "investigator": case.investigator,
        "firm": case.firm,
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "finding": case.finding,
        "finding_reason": case.finding_reason,
        "summary": case.summary,
    }


def _run(step: Callable, as_json: bool, said: Callable[[Investigation], str]) -> Investigation:
    try:
        with transaction(engine()) as session:
            case = step(session)
            claim = session.get(Claim, case.claim_id)
            row = case_row(case, claim.submission_id if claim else "", _now())
    except (claim_service.ClaimNotFound, investigations.CaseNotFound) as error:
        fail(str(error), "`huzhu investigate list` lists the open cases")
    except ValueError as error:  # Refused: the message says why
        fail(str(error), HINT)
    if as_json:
        print_json(row)
    else:
        console.print(said(case))
    return case


def _now() -> datetime:
    return datetime.now(UTC)


@investigate_app.command("open")
def open_case(
    submission_id: str,
    reviewer: Annotated[str, typer.Option("--reviewer", help="Who you are (recorded).")],
    why: Annotated[str, typer.Option("--why", help="What the investigator should find out.")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a claim to an investigator: one waiting for a reviewer (it leaves the queue until
    the findings come back), or an announced one a member objected to (its re-review waits)."""
    now = _now()
    _run(
        lambda s: review.investigate(s, submission_id, why, reviewer, now),
        as_json,
        lambda c: f"case {c.id} opened for {submission_id}, findings due {c.due_at:%Y-%m-%d %H:%M}",
    )


@investigate_app.command("list")
def list_cases(
    plan: Annotated[str, typer.Option("--plan", help="One plan's cases; default all.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: bool = JSON_OPTION,
) -> None:
    """The open cases, the soonest due first."""
    if plan and plan not in load_plans():
        fail(f"unknown plan {plan!r}", f"use one of: {', '.join(load_plans())}")
    now = _now()
    with transaction(engine()) as session:
        rows = [
            case_row(c, ref, now)
            for c, ref in investigations.open_cases(session, plan or None, limit)
        ]
    if as_json:
        return print_json({"open": rows})
    if not rows:
        console.print("no investigation is open")
        return
    columns = ["case", "claim", "plan", "cause", "due", "", "investigator", "why"]
    cells = [
        [
            r["case"],
            r["submission_id"],
            r["plan"],
            r["cause"],
            r["due_at"][:16],
            "OVERDUE" if r["overdue"] else "",
            _holder(r),
            r["why"][:60],
        ]
        for r in rows
    ]
    console.print(table("open investigations", columns, cells))


def _holder(row: dict) -> str:
    if row["investigator"] is None:
        return "(unassigned)"
    return f"{row['investigator']} ({row['firm']})" if row["firm"] else row["investigator"]


@investigate_app.command("show")
def show(case_id: CaseArgument, as_json: bool = JSON_OPTION) -> None:
    """A case in full: why it was opened, who holds it, its notes, evidence and findings."""
    with transaction(engine()) as session:
        try:
            found = investigations.case_file(session, case_id)
        except investigations.CaseNotFound as error:
            fail(str(error), "`huzhu investigate list` lists the open cases")
        row = case_row(found.case, found.submission_id, _now())
    row["notes"] = [
        {"at": n.at.isoformat(), "author": n.author, "text": n.text} for n in found.notes
    ]
    row["evidence"] = [
        {
            "sha256": e.sha256,
            "label": e.label,
            "media_type": e.media_type,
            "size_bytes": e.size_bytes,
            "added_by": e.added_by,
            "added_at": e.added_at.isoformat(),
        }
        for e in found.evidence
    ]
    if as_json:
        return print_json(row)
    state = f"closed: {row['finding']}" if row["closed_at"] else "open"
    console.print(f"case {case_id} for {row['submission_id']} ({row['cause']}), {state}")
    console.print(f"why: {row['why']}\nholder: {_holder(row)}; due {row['due_at'][:16]}")
    if row["summary"]:
        console.print(f"findings: {row['finding']} {row['finding_reason'] or ''}\n{row['summary']}")
    if row["notes"]:
        notes = [[n["at"][:16], n["author"], n["text"]] for n in row["notes"]]
        console.print(table("notes", ["at", "by", "note"], notes))
    if row["evidence"]:
        files = [
            [e["sha256"][:16], e["label"], e["media_type"], e["size_bytes"]]
            for e in row["evidence"]
        ]
        console.print(table("evidence", ["sha256", "label", "type", "bytes"], files))


@investigate_app.command("assign")
def assign(
    case_id: CaseArgument,
    investigator: Annotated[str, typer.Option("--to", help="The investigator's id.")],
    by: Annotated[str, typer.Option("--by", help="Who you are (recorded).")],
    firm: Annotated[str, typer.Option("--firm", help="Their firm, if outside; none: staff.")] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """Give the case to an investigator, of our staff or of an outside firm."""
    now = _now()
    _run(
        lambda s: investigations.assign(s, case_id, investigator, firm or None, by, now),
        as_json,
        lambda c: f"case {case_id} assigned to {investigator}" + (f" ({firm})" if firm else ""),
    )


@investigate_app.command("note")
def add_note(
    case_id: CaseArgument,
    text: Annotated[str, typer.Argument(help="What you found or did.")],
    investigator: InvestigatorOption,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a note to a case you hold."""
    now = _now()

    def step(session):
        investigations.add_note(session, case_id, investigator, text, now)
        return session.get(Investigation, case_id)

    _run(step, as_json, lambda c: f"note added to case {case_id}")


@investigate_app.command("evidence")
def add_evidence(
    case_id: CaseArgument,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The file to add.")],
    investigator: InvestigatorOption,
    label: Annotated[str, typer.Option("--label", help="What it is, e.g. 出院小结.")] = "",
    media_type: Annotated[
        str, typer.Option("--type", help="Its media type; default from the file's name.")
    ] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """Add an evidence file (PDF, JPEG, PNG or text, up to 20 MiB) to a case you hold. It is
    stored by its SHA-256 in the evidence store, not in the database."""
    data = path.read_bytes()
    kind = media_type or mimetypes.guess_type(path.name)[0] or ""
    now = _now()
    added: list[str] = []

    def step(session):
        evidence = investigations.add_evidence(
            session, case_id, investigator, data, kind, label or path.name, evidence_store(), now
        )
        added.append(evidence.sha256)
        return session.get(Investigation, case_id)

    _run(step, as_json, lambda c: f"evidence {added[0]} added to case {case_id}")


@investigate_app.command("fetch")
def fetch_evidence(
    case_id: CaseArgument,
    sha256: Annotated[str, typer.Argument(help="The file's SHA-256 (`huzhu investigate show`).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write it.", dir_okay=False)],
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a case's evidence file out, checked against its hash."""
    with transaction(engine()) as session:
        listed = investigations.evidence_of(session, case_id, sha256)
    if listed is None:
        fail(f"case {case_id} has no evidence {sha256}", HINT)
    try:
        out.write_bytes(evidence_store().get(sha256))
    except (EvidenceMissing, EvidenceCorrupt) as error:
        fail(str(error), "restore the evidence store (HUZHU_EVIDENCE_DIR) from its backup")
    if as_json:
        return print_json({"sha256": sha256, "label": listed.label, "out": str(out)})
    console.print(f"{listed.label}: {listed.size_bytes} bytes written to {out}")


@investigate_app.command("findings")
def file_findings(
    case_id: CaseArgument,
    finding: Annotated[Finding, typer.Option("--finding", help="What the facts show.")],
    summary: Annotated[str, typer.Option("--summary", help="The findings, for the reviewer.")],
    investigator: InvestigatorOption,
    reason: Annotated[
        Reason | None, typer.Option("--reason", help="Findings against the claim: the reason.")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Close a case you hold with its findings: the claim goes back to a reviewer, and a
    decision against the findings needs a second reviewer."""
    now = _now()
    _run(
        lambda s: investigations.close(s, case_id, investigator, finding, reason, summary, now),
        as_json,
        lambda c: f"case {case_id} closed: {finding}; the claim is back with a reviewer",
    )
