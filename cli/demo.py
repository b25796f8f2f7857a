"""`huzhu demo`: a whole cycle on the embedded default, from enrolment to balanced books."""

import asyncio
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import col, select

from broker.app import reconfigure
from broker.database import engine, upgrade
from broker.evidence import evidence_store
from broker.payments import set_failing_accounts
from broker.settings import Settings
from broker.submit import send_step, submit_claim
from cli import synthetic
from cli.operations import (
    close_and_wait,
    publish_and_wait,
    wait_for_claims,
    wait_for_money,
    worker_in_this_process,
)
from cli.output import (
    JSON_OPTION,
    console,
    cycle_figures,
    cycle_table,
    print_json,
    progress,
    proof_keys,
    table,
    wait_for,
)
from domain.calendar import charge_day, local_date, next_announcement_day, start_of_day
from domain.claims import State
from domain.db import transaction
from domain.investigations import Finding
from domain.models import ClaimEvent, Member
from domain.money import yuan
from domain.plans import load_plans
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import disputes, investigations, review
from domain.services import members as member_service
from domain.services import payments as payment_service
from domain.services.announcements import announced_cases

TIMEOUT = 120.0
DEMO_FIRM = "示例调查评估公司"  # an outside investigation firm, as the plan used


def demo(
    members: Annotated[
        int, typer.Option("--members", min=20, help="Synthetic members to enrol.")
    ] = 2000,
    claims: Annotated[
        int, typer.Option("--claims", min=16, help="Claims to submit (some bad).")
    ] = 40,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic data.")] = 7,
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Keep the demo's database and queue in this folder."),
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run one sharing cycle end to end on the embedded default (SQLite, a file-system queue,
    a real Celery worker in this process): enrol members, submit good and bad claims, review,
    publish, close, and audit the books."""
    folder = keep or Path(tempfile.mkdtemp(prefix="huzhu-demo-"))
    if keep and folder.exists():
        shutil.rmtree(folder)
    reconfigure(Settings(data_dir=folder, database_url="", broker_url=""))
    started = time.monotonic()
    try:
        upgrade()
        result = _run(members, claims, seed, as_json)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        print_json(result)
    else:
        _print(result, keep)
    if not result["audit"]["balanced"]:
        raise typer.Exit(1)


def _run(members: int, claims: int, seed: int, quiet: bool) -> dict:
    today = local_date(datetime.now(UTC))
    announce_on = next_announcement_day(today)
    scenario = synthetic.build(members, claims, today, seed)
    report = member_service.ImportReport()
    member_service.import_members(engine(), enumerate(scenario.members, start=2), report)
    with worker_in_this_process():
        with progress(quiet) as bar:
            task = bar.add_task("submitting claims", total=len(scenario.claims))
            for line in scenario.claims:
                submit_claim(line)
                bar.advance(task)
        wait_for_claims(TIMEOUT)
        investigated = _investigate_flagged()
        reviewed = _review_by_hand()
        wait_for_claims(TIMEOUT)
        refused = _some_accounts_fail(scenario, seed)
        jury = _jury_of_members(seed)
        cycles, objections = [], []
        for plan in load_plans():
            published = publish_and_wait(plan, start_of_day(announce_on), TIMEOUT)
            objections += _an_objection_upheld(published, seed)
            closed = close_and_wait(plan, start_of_day(charge_day(announce_on)), TIMEOUT, quiet)
            cycles.append(closed)
        wait_for_money([c.id for c in cycles], TIMEOUT)
    with transaction(engine()) as session:
        money = {c.id: payment_service.money_figures(session, c.id) for c in cycles}
        counts = claim_service.counts_by_state(session)
        reasons = claim_service.counts_by_reason(session)
        announcement = {c.plan: announced_cases(session, c) for c in cycles}
        books = audit_service.audit(session, datetime.now(UTC), keys=proof_keys())
    return {
        "members": report.imported,
        "claims": counts,
        "rejections": reasons,
        "investigated": investigated,
        "reviewed_by_hand": reviewed,
        "announcement": {
            plan: [case.__dict__ for case in cases] for plan, cases in announcement.items()
        },
        "cycles": [cycle_figures(c, money[c.id]) for c in cycles],
        "accounts_refusing_debits": refused,
        "objections": objections,
        "jury": jury,
        "audit": {
            "balanced": books.balanced,
            "problems": books.problems,
            "attention": books.attention,
            "accounts": books.accounts,
        },
    }


def _some_accounts_fail(scenario: synthetic.Scenario, seed: int) -> int:
    """Tell the sandbox provider to refuse the debits of about 3% of the accounts, so that
    the demo shows failed debits left as arrears next to the collected ones."""
    rng = random.Random(seed)
    refs = [m.member_ref for m in scenario.members if rng.random() < 0.03]
    asyncio.run(set_failing_accounts(refs))
    return len(refs)


def _an_objection_upheld(cycle, seed: int) -> list[dict]:
    """A member objects to the first announced case; re-review upholds it, so the case leaves
    the cycle and the share no longer pays for it."""
    with transaction(engine()) as session:
        cases = announced_cases(session, cycle)
        if not cases:
            return []
        target = cases[0].case_ref
        claimant = claim_service.find_claim(session, target).member_id
        objector = session.exec(
            select(Member.member_ref)
            .where(Member.plan == cycle.plan, Member.id != claimant, Member.exited_at.is_(None))
            .order_by(Member.id)
        ).first()
        objection = disputes.file_objection(
            session,
            target,
            objector,
            "seen at work after the diagnosis date",
            None,
            start_of_day(cycle.announce_on) + timedelta(hours=10),
        )
        disputes.decide_objection(
            session,
            objection.id,
            True,
            "demo-reviewer",
            "the hospital corrected its record",
            datetime.now(UTC),
        )
    return [{"plan": cycle.plan, "case": target, "objection": objection.id, "status": "upheld"}]


def _jury_of_members(seed: int) -> list[dict]:
    """The applicant of a claim the reviewer rejected asks for a jury; eligible members vote,
    about 62% in favour; the count runs as the beat task does when the day is over."""
    now = datetime.now(UTC)
    with transaction(engine()) as session:
        rejected = claim_service.submission_ids_in(session, State.REJECTED)
        disputed = [s for s in rejected if s.startswith("R-")]
        if not disputed:
            return []
        case = disputes.request_jury(session, disputed[0], now)
        refs = session.exec(
            select(Member.member_ref).where(Member.plan == "critical-illness").order_by(Member.id)
        ).all()
        rng = random.Random(seed)
        for ref in refs:
            try:
                disputes.cast_vote(session, case.id, ref, rng.random() < 0.62, now)
            except disputes.Refused:
                continue  # not eligible: a child, not certified, new, family, or in arrears
    send_step("close_juries", (case.closes_at + timedelta(minutes=1)).isoformat())

    def counted():
        with transaction(engine()) as session:
            [(jury, ref)] = disputes.jury_cases(session, case.id)
        return (jury, ref) if jury.status == "closed" else None

    closed, ref = wait_for(counted, TIMEOUT, "counting the jury's votes")
    wait_for_claims(TIMEOUT)  # an approved claim goes on to the next announcement
    return [
        {
            "case": closed.id,
            "claim": ref,
            "support": closed.support,
            "oppose": closed.oppose,
            "valid": closed.valid,
            "approved": closed.approved,
        }
    ]


def _investigate_flagged() -> list[dict]:
    """Play an outside firm's investigator: each case a fraud flag opened is assigned, visited
    (a note and the ward's discharge summary as evidence, kept by its hash) and closed with
    findings that support the claim, which goes back to a reviewer."""
    now = datetime.now(UTC)
    store = evidence_store()
    with transaction(engine()) as session:
        cases = investigations.open_cases(session, limit=1000)
    done = []
    for case, submission_id in cases:
        assert case.id is not None
        report = f"出院小结 {submission_id}: diagnosis confirmed on the ward\n".encode()
        with transaction(engine()) as session:
            investigations.assign(session, case.id, "demo-investigator", DEMO_FIRM, "demo", now)
            investigations.add_note(
                session, case.id, "demo-investigator", "visited the ward; records match", now
            )
            investigations.add_evidence(
                session, case.id, "demo-investigator", report, "text/plain", "出院小结", store, now
            )
            investigations.close(
                session,
                case.id,
                "demo-investigator",
                Finding.SUPPORTS,
                None,
                "the ward's records and the attending doctor confirm the diagnosis and its date",
                now,
            )
        done.append({"case": case.id, "submission_id": submission_id, "why": case.why})
    return done


def _review_by_hand() -> list[dict]:
    """Play the reviewers: approve what waits (a case the rules could not decide, an approval
    the sample drew, one a fraud flag stopped) but reject R-CRITERIA, the case made to fall
    short of the plan's definition; a second reviewer confirms each rejection and each large
    approval (four eyes)."""
    now = datetime.now(UTC)
    with transaction(engine()) as session:
        review.open_tasks(session, now)
        waiting = [
            (w.claim.submission_id, _why(session, w.claim.id))
            for w in review.queue(session, limit=1000)
        ]
    decided = []
    for submission_id, why in waiting:
        approve = submission_id != "R-CRITERIA"
        note = "confirmed by the hospital records" if approve else "criteria not met"
        reviewers = []
        for reviewer in ("demo-reviewer", "demo-checker"):
            with transaction(engine()) as session:
                claim = review.decide(
                    session, submission_id, approve, reviewer, now, reviewer_note=note
                )
            reviewers.append(reviewer)
            if claim.state != State.AWAITING_SECOND_REVIEW:
                break
        if approve:
            send_step("announce_claim", claim.id)
        decided.append(
            {"submission_id": submission_id, "why": why, "state": claim.state, "by": reviewers}
        )
    return decided


def _why(session, claim_id: int | None) -> str:
    """Why the claim waits for a person: the rules' words as it was sent."""
    sent = session.exec(
        select(ClaimEvent.reason)
        .where(ClaimEvent.claim_id == claim_id, ClaimEvent.actor == "rules")
        .where(col(ClaimEvent.to_state).in_([State.NEEDS_REVIEW, State.INVESTIGATING]))
        .order_by(col(ClaimEvent.id))
    ).first()
    return sent or ""


def _print(result: dict, keep: Path | None) -> None:
    console.print(f"enrolled [bold]{result['members']:,}[/] members")
    console.print(
        table("claims by state", ["state", "claims"], sorted(map(list, result["claims"].items())))
    )
    console.print(
        table(
            "rejections by reason",
            ["reason", "claims"],
            sorted(map(list, result["rejections"].items())),
        )
    )
    if result["investigated"]:
        cases = [[c["case"], c["submission_id"], c["why"][:70]] for c in result["investigated"]]
        console.print(
            table(
                f"investigated by {DEMO_FIRM}, findings: supports",
                ["case", "claim", "why"],
                cases,
            )
        )
    reviewed = [
        [r["submission_id"], r["why"][:70], " then ".join(r["by"]), r["state"]]
        for r in result["reviewed_by_hand"]
    ]
    console.print(table("reviewed by hand", ["claim", "why a person", "by", "now"], reviewed))
    for plan, cases in result["announcement"].items():
        rows = [
            [
                c["masked_name"],
                c["age"],
                c["sex"],
                c["province"],
                c["illness"],
                yuan(c["amount_fen"]),
                c["days_since_joining"],
            ]
            for c in cases
        ]
        console.print(
            table(
                f"公示 {plan}",
                ["name", "age", "sex", "province", "illness", "aid (yuan)", "days a member"],
                rows,
            )
        )
    for objection in result["objections"]:
        console.print(
            f"objection {objection['objection']} to case {objection['case']} "
            f"({objection['plan']}): {objection['status']}, so the case left the cycle"
        )
    for jury in result["jury"]:
        outcome = (
            "approved: the claim joins the next announcement"
            if jury["approved"]
            else ("not approved" if jury["valid"] else "below the quorum: nothing decided")
        )
        console.print(
            f"jury {jury['case']} on claim {jury['claim']}: {jury['support']} for, "
            f"{jury['oppose']} against; {outcome}"
        )
    for figures in result["cycles"]:
        console.print(cycle_table(figures))
        if figures["subsidy_fen"]:
            console.print(
                f"  a small pool: each of its {figures['sharing_members']:,} members gives at most "
                "the per-patient cap for each case; the platform covers the rest"
            )
    audit = result["audit"]
    verdict = "[green]balanced to the fen[/]" if audit["balanced"] else "[red]NOT balanced[/]"
    console.print(f"audit: {verdict}; demo took {result['seconds']} s")
    if keep:
        console.print(
            f"kept in {keep}: HUZHU_DATA_DIR={keep} huzhu cycle show --plan critical-illness"
        )
    else:
        console.print(
            "the demo's data was discarded; to explore it, run `huzhu demo --keep DIR`, then "
            "`HUZHU_DATA_DIR=DIR huzhu audit`, `HUZHU_DATA_DIR=DIR huzhu announcements show "
            "--plan critical-illness` or `HUZHU_DATA_DIR=DIR huzhu claims show SUBMISSION_ID`"
        )
