"""`huzhu review`: the queue of claims waiting for a person, with their deadlines; take, hand
back and decide them, four eyes on rejections and large approvals (domain.review)."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer

from broker.database import engine
from broker.submit import send_step
from cli.output import JSON_OPTION, console, fail, parse_moment, print_json, table
from domain.claims import Reason, State
from domain.db import transaction
from domain.models import Claim
from domain.money import yuan
from domain.plans import load_plans
from domain.services import claims as claim_service
from domain.services import flags, review

review_app = typer.Typer(
    help="The review queue: claims waiting for a person, with their deadlines.",
    no_args_is_help=True,
)
ReviewerOption = Annotated[str, typer.Option("--reviewer", help="Who you are (recorded).")]


@review_app.command("queue")
def show_queue(
    plan: Annotated[str, typer.Option("--plan", help="One plan's queue; default all.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: bool = JSON_OPTION,
) -> None:
    """What waits for a person: escalated first, then by due time, with who has each."""
    if plan and plan not in load_plans():
        fail(f"unknown plan {plan!r}", f"use one of: {', '.join(load_plans())}")
    now = datetime.now(UTC)
    with transaction(engine()) as session:
        review.open_tasks(session, now)  # a claim sent to a person a moment ago is listed too
        waiting = review.queue(session, plan or None, limit)
        rows = [
            _row(w, now)
            | {
                "flags": [f.rule for f in flags.of_claim(session, w.task.claim_id)],
                "findings": review.findings_of(session, w.task.claim_id),
            }
            for w in waiting
        ]
    if as_json:
        return print_json({"waiting": rows})
    if not rows:
        console.print("nothing waits for a reviewer")
        return
    columns = [
        "claim",
        "plan",
        "stage",
        "amount",
        "due",
        "",
        "taken by",
        "first decision",
        "flags",
        "findings",
    ]
    console.print(
        table(
            "review queue",
            columns,
            [
                [
                    r["submission_id"],
                    r["plan"],
                    r["stage"],
                    yuan(r["amount_fen"] or 0),
                    r["due_at"][:16],
                    "OVERDUE" if r["overdue"] else "escalated" if r["escalated"] else "",
                    r["assigned_to"] or "",
                    r["first_decision"] or "",
                    ", ".join(r["flags"]),
                    r["findings"] or "",
                ]
                for r in rows
            ],
        )
    )


def _row(waiting: review.Waiting, now: datetime) -> dict:
    task, claim = waiting.task, waiting.claim
    first = None
    if task.first_approve is not None:
        first = f"{task.first_reviewer}: " + (
            "approve" if task.first_approve else f"reject ({task.first_reason})"
        )
    return {
        "submission_id": claim.submission_id,
        "plan": claim.plan,
        "state": claim.state,
        "stage": task.stage,
        "amount_fen": claim.amount_fen,
        "why": claim.reason_detail,
        "due_at": task.due_at.isoformat(),
        "escalate_at": task.escalate_at.isoformat(),
        "escalated": task.escalated_at is not None,
        "overdue": waiting.overdue(now),
        "assigned_to": task.assigned_to,
        "first_decision": first,
    }


def _run(submission_id: str, step: Callable[..., Claim], as_json: bool) -> Claim:
    try:
        with transaction(engine()) as session:
            claim = step(session)
    except claim_service.ClaimNotFound as error:
        fail(str(error), "`huzhu review queue` lists the claims waiting")
    except ValueError as error:
        fail(str(error), "`huzhu review queue` shows who has each claim and its first decision")
    if as_json:
        print_json(
            {"submission_id": submission_id, "state": claim.state, "reason_code": claim.reason_code}
        )
    else:
        console.print(f"{submission_id}: {claim.state} {claim.reason_code or ''}".rstrip())
    return claim


@review_app.command("take")
def take(submission_id: str, reviewer: ReviewerOption, as_json: bool = JSON_OPTION) -> None:
    """Take a claim from the queue: it is yours until you decide it or hand it back."""
    now = datetime.now(UTC)
    _run(submission_id, lambda s: review.take(s, submission_id, reviewer, now), as_json)


@review_app.command("release")
def release(submission_id: str, reviewer: ReviewerOption, as_json: bool = JSON_OPTION) -> None:
    """Hand a claim you took back to the queue."""
    now = datetime.now(UTC)
    _run(submission_id, lambda s: review.release(s, submission_id, reviewer, now), as_json)


@review_app.command("decide")
def decide(
    submission_id: str,
    approve: Annotated[bool, typer.Option("--approve/--reject", help="Your decision.")],
    reviewer: ReviewerOption,
    reason: Annotated[
        Reason, typer.Option("--reason", help="Coded reason of a rejection.")
    ] = Reason.CRITERIA_NOT_MET,
    note: Annotated[str, typer.Option("--note", help="Why, in a few words.")] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """Decide a claim. A rejection, or an approval of the plan's threshold or more, waits for a
    second reviewer who is not you (awaiting_second_review); their same decision makes it final,
    a different one sends it back to the queue. An approval goes on to the next announcement."""
    now = datetime.now(UTC)
    claim = _run(
        submission_id,
        lambda s: review.decide(s, submission_id, approve, reviewer, now, reason, note),
        as_json,
    )
    if claim.state == State.APPROVED:
        send_step("announce_claim", claim.id)


@review_app.command("escalate")
def escalate(
    at: Annotated[str, typer.Option("--at", help="The clock of the run; default now.")] = "",
    as_json: bool = JSON_OPTION,
) -> None:
    """What the beat does every five minutes: escalate the claims past their escalation time."""
    moment = parse_moment(at, default_now=True)
    with transaction(engine()) as session:
        review.close_decided(session)
        opened = review.open_tasks(session, moment)
        escalated = review.escalate_overdue(session, moment)
    if as_json:
        return print_json({"queued": opened, "escalated": escalated})
    console.print(f"queued {opened}; escalated {len(escalated)}: {', '.join(escalated) or '-'}")
