"""Members in the database: enrolment in batches, voluntary exit, and who shares at a moment."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import ColumnElement, Engine, and_, or_, tuple_, update
from sqlmodel import Session, col, func, insert, select

from domain.calendar import add_years, local_date, start_of_day
from domain.db import transaction
from domain.members import Enrolment, ExitReason, exit_refusal, join_refusal
from domain.models import CycleStatus, Member, SharingCycle
from domain.plans import get_plan
from domain.services.store import lock_plan

BATCH = 2_000


def shares_at(cutoff: datetime) -> ColumnElement[bool]:
    """Member rows in a plan at `cutoff`: joined by then and not yet left.

    Members still in the waiting period share; later joiners don't; later leavers still pay.
    """
    return and_(
        col(Member.joined_at) <= cutoff,
        or_(col(Member.exited_at).is_(None), col(Member.exited_at) > cutoff),
    )


@dataclass
class ImportReport:
    imported: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def import_members(
    engine: Engine, rows: Iterable[tuple[int, Enrolment | str]], report: ImportReport
) -> None:
    """Enrol validated rows, one transaction per batch, so a large file commits as it goes and
    memory stays flat; a row given as a string is a parse error for its line."""
    for batch in _batches(rows, BATCH):
        with transaction(engine) as session:
            import_batch(session, batch, report)


def import_batch(
    session: Session, batch: list[tuple[int, Enrolment | str]], report: ImportReport
) -> None:
    for plan in sorted({row.plan for _, row in batch if not isinstance(row, str)}):
        lock_plan(session, plan, shared=True)
    fixed = published_cutoffs(session)
    good: list[tuple[int, Enrolment]] = []
    for line, row in batch:
        if isinstance(row, str):
            report.refused.append((line, row))
        elif refusal := join_refusal(get_plan(row.plan), row):
            report.refused.append((line, refusal))
        elif row.plan in fixed and row.joined_at <= fixed[row.plan]:
            report.refused.append(
                (
                    line,
                    f"joined_at is before {fixed[row.plan].isoformat()}, the cut-off of "
                    "a published cycle, whose members are fixed",
                )
            )
        else:
            good.append((line, row))
    _insert_batch(session, good, report)


def exit_moment(session: Session, plan: str, at: datetime) -> datetime:
    """When a membership ends for a reason found at `at`: never before a published cut-off,
    whose sharing members are fixed (the member still shares in that cycle)."""
    published = published_cutoffs(session).get(plan)
    if published is not None and at <= published:
        return published + timedelta(microseconds=1)
    return at


def published_cutoffs(session: Session) -> dict[str, datetime]:
    """Each plan's latest cut-off whose members are fixed (its cycle is announced or later)."""
    rows = session.exec(
        select(SharingCycle.plan, func.max(SharingCycle.cutoff_at))
        .where(SharingCycle.status != CycleStatus.OPEN)
        .group_by(SharingCycle.plan)
    ).all()
    return {plan: cutoff for plan, cutoff in rows}


def _insert_batch(
    session: Session, rows: list[tuple[int, Enrolment]], report: ImportReport
) -> None:
    pending = _new_members_only(session, rows, report)
    payers = _payer_ids(session, {row.payer_ref for _, row in pending if row.payer_ref})
    # A payer may be enrolled in the same file, just before their family: insert in rounds,
    # each round the rows whose payer is now known.
    while pending:
        ready = [(n, row) for n, row in pending if not row.payer_ref or row.payer_ref in payers]
        if not ready:
            break
        session.exec(insert(Member), params=[_member_values(row, payers) for _, row in ready])
        session.flush()
        report.imported += len(ready)
        done = {line for line, _ in ready}
        pending = [(line, row) for line, row in pending if line not in done]
        payers |= _payer_ids(session, {row.payer_ref for _, row in pending if row.payer_ref})
    for line, row in pending:
        report.refused.append((line, f"payer {row.payer_ref} is not a member (enrol them first)"))


def _new_members_only(
    session: Session, rows: list[tuple[int, Enrolment]], report: ImportReport
) -> list[tuple[int, Enrolment]]:
    keys = {(row.plan, row.member_ref) for _, row in rows}
    taken = set()
    if keys:
        taken = set(
            session.exec(
                select(Member.plan, Member.member_ref).where(
                    tuple_(Member.plan, Member.member_ref).in_(list(keys))
                )
            ).all()
        )
    fresh = []
    for line, row in rows:
        key = (row.plan, row.member_ref)
        if key in taken:
            report.refused.append((line, f"{row.member_ref} is already a member of {row.plan}"))
        else:
            taken.add(key)
            fresh.append((line, row))
    return fresh


def _member_values(row: Enrolment, payers: dict[str, int]) -> dict:
    return {
        "member_ref": row.member_ref,
        "plan": row.plan,
        "name": row.name,
        "birth_date": row.birth_date,
        "sex": row.sex,
        "province": row.province,
        "joined_at": row.joined_at,
        "payer_id": payers.get(row.payer_ref) if row.payer_ref else None,
        "jury_certified": row.jury_certified,
    }


def _payer_ids(session: Session, refs: set[str]) -> dict[str, int]:
    """Member ids of the payers still in a plan; a payer pays for family in any plan."""
    if not refs:
        return {}
    rows = session.exec(
        select(Member.member_ref, func.min(Member.id))
        .where(col(Member.member_ref).in_(refs), col(Member.exited_at).is_(None))
        .group_by(Member.member_ref)
    ).all()
    return {ref: member_id for ref, member_id in rows}


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def exit_member(session: Session, plan: str, member_ref: str, at: datetime) -> Member:
    """Voluntary exit, effective at 00:00 the next day: no refund, and a member who leaves on
    an announcement day (or later) still shares in that cycle."""
    lock_plan(session, plan, shared=True)
    effective = start_of_day(local_date(at) + timedelta(days=1))
    member = session.exec(
        select(Member).where(Member.plan == plan, Member.member_ref == member_ref).with_for_update()
    ).first()
    if member is None:
        raise LookupError(f"{member_ref} is not a member of {plan}")
    dependants = session.exec(
        select(func.count()).where(Member.payer_id == member.id, col(Member.exited_at).is_(None))
    ).one()
    if refusal := exit_refusal(member.exited_at, dependants):
        raise ValueError(f"{member_ref} cannot leave {plan}: {refusal}")
    published = published_cutoffs(session).get(plan)
    if published is not None and effective <= published:
        # Who shares in a published cycle is fixed; an exit cannot take effect before its cut-off.
        raise ValueError(
            f"{member_ref} cannot leave {plan} before {published.isoformat()}, "
            "the cut-off of a published cycle"
        )
    member.exited_at = effective
    member.exit_reason = ExitReason.VOLUNTARY
    session.add(member)
    return member


def age_out(session: Session, plan_code: str, cutoff: datetime) -> int:
    """Record the exit of members who reached the plan's exit age by `cutoff`.

    The exit is stamped at the cut-off that noticed it, so the member does not share that cycle.
    """
    plan = get_plan(plan_code)
    last_birth_date = add_years(local_date(cutoff), -plan.exit_age_years)
    result = session.execute(
        update(Member)
        .where(
            Member.plan == plan_code,
            col(Member.exited_at).is_(None),
            col(Member.birth_date) <= last_birth_date,
        )
        .values(exited_at=cutoff, exit_reason=ExitReason.AGE_LIMIT)
    )
    return result.rowcount
