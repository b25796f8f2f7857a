"""Archiving an old cycle's charges: its partition is detached from the live table, once the
cycle is fully collected and audits clean, so it can be dumped and dropped."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text
from sqlmodel import col, func, select

from domain.calendar import local_date
from domain.db import transaction
from domain.models import Charge, Member, SharingCycle
from domain.plans import get_plan
from domain.services.audit import audit
from domain.services.cycles import CycleStatus
from domain.services.proofs import ProofKeys
from domain.services.store import charge_partition


@dataclass(frozen=True)
class Archived:
    cycle_id: int
    table: str
    rows: int
    archived_at: datetime


def archive_charges(engine: Engine, cycle_id: int, now: datetime, keys: ProofKeys) -> Archived:
    """Detach the cycle's charge partition; again on an archived cycle, nothing changes.

    Raises LookupError for an unknown cycle and ValueError saying why a cycle cannot be archived.
    """
    if engine.dialect.name != "postgresql":
        raise ValueError("SQLite keeps all charges in one table: there is no partition to archive")
    table = charge_partition(cycle_id)
    with transaction(engine) as session:
        cycle = session.get(SharingCycle, cycle_id)
        if cycle is None:
            raise LookupError(f"there is no cycle {cycle_id}")
        if cycle.charges_archived_at is not None:
            return Archived(cycle_id, table, cycle.sharing_members, cycle.charges_archived_at)
        rows = _check_archivable(session, cycle, now, keys)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # CONCURRENTLY: the live cycles' charges stay readable and writable meanwhile (it
        # cannot run inside a transaction, hence the autocommit connection).
        attached = connection.execute(
            text("SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(:table)"),
            {"table": table},
        ).first()
        if attached:
            connection.execute(text(f"ALTER TABLE charge DETACH PARTITION {table} CONCURRENTLY"))
    with transaction(engine) as session:
        cycle = session.get(SharingCycle, cycle_id)
        cycle.charges_archived_at = now
        session.add(cycle)
    return Archived(cycle_id, table, rows, now)


def _check_archivable(session, cycle: SharingCycle, now: datetime, keys: ProofKeys) -> int:
    if cycle.status != CycleStatus.CLOSED:
        raise ValueError(f"cycle {cycle.id} is {cycle.status}: only a closed cycle is archived")
    if cycle.charge_on.year >= local_date(now).year:
        # This year's charges are still read: each member's total against the annual cap.
        raise ValueError(
            f"cycle {cycle.id} charged in {cycle.charge_on.year}: this year's charges count "
            f"against the annual cap, so only cycles of past years are archived (from "
            f"{cycle.charge_on.year + 1}-01-01)"
        )
    rows, outstanding = session.exec(
        select(
            func.count(), func.count().filter(col(Charge.collected_fen) != Charge.amount_fen)
        ).where(Charge.cycle_id == cycle.id)
    ).one()
    if outstanding:
        raise ValueError(
            f"cycle {cycle.id} has {outstanding} charges not collected: arrears are settled "
            "against them, so its charges stay until they are paid"
        )
    waiting = _still_waiting(session, cycle, now)
    if waiting:
        raise ValueError(
            f"cycle {cycle.id} charged {waiting} members still inside their waiting period: a "
            "waiting-period illness refunds their shares from these charges, so they stay until "
            "every such period has ended"
        )
    report = audit(session, now, keys=keys)
    problems = [p for c in report.cycles if c.cycle_id == cycle.id for p in c.problems]
    if problems:
        raise ValueError(f"cycle {cycle.id} does not audit clean: " + "; ".join(problems))
    return rows


def _still_waiting(session, cycle: SharingCycle, now: datetime) -> int:
    """Members charged in the cycle whose waiting period has not ended by `now` (a day's
    margin: the period runs from 00:00 the day after joining)."""
    waiting = timedelta(days=get_plan(cycle.plan).waiting_days + 1)
    return session.exec(
        select(func.count())
        .select_from(Charge)
        .join(Member, col(Member.id) == Charge.member_id)
        .where(Charge.cycle_id == cycle.id, col(Member.joined_at) > now - waiting)
    ).one()
