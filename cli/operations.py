"""Operator actions that send work to the fleet and wait for the database to show it done."""

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from celery.worker import state as worker_state
from sqlmodel import col, select

from broker import payments
from broker.app import QUEUES, app
from broker.database import engine
from broker.submit import send_step
from cli.output import progress, wait_for
from domain.calendar import (
    announcement_day_on_or_before,
    local_date,
    next_announcement_day,
    start_of_day,
)
from domain.claims import WORKING
from domain.db import transaction
from domain.models import SharingCycle
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import payments as payment_service


def next_moment(plan: str, step: str) -> datetime:
    """`--at next`: 00:00 Shanghai of the plan's next announcement day after its latest cycle
    (publish), or of the charge day of its oldest announced cycle (close)."""
    today = local_date(datetime.now(UTC))
    with transaction(engine()) as session:
        cycles = session.exec(
            select(SharingCycle)
            .where(SharingCycle.plan == plan)
            .order_by(col(SharingCycle.announce_on))
        ).all()
    if step == "close":
        due = [c for c in cycles if c.status == cycle_service.CycleStatus.ANNOUNCED]
        if not due:
            raise cycle_service.NothingToClose(f"{plan} has no announced cycle to close")
        return start_of_day(due[0].charge_on)
    after = max([today - timedelta(days=1)] + [c.announce_on for c in cycles])
    return start_of_day(next_announcement_day(after))


def publish_and_wait(plan: str, moment: datetime, timeout: float) -> SharingCycle:
    announce_on = announcement_day_on_or_before(local_date(moment))
    send_step("publish_announcements", plan, moment.isoformat())

    def published() -> SharingCycle | None:
        with transaction(engine()) as session:
            cycle = cycle_service.cycle_announced_on(session, plan, announce_on)
            return cycle if cycle and cycle.status != cycle_service.CycleStatus.OPEN else None

    return wait_for(published, timeout, f"publishing {plan} for {announce_on}")


def close_and_wait(plan: str, moment: datetime, timeout: float, quiet: bool) -> SharingCycle:
    """Send close_cycle for the due cycle and follow its chunks until it is closed.

    Raises NothingToClose when no announced cycle of the plan is due at `moment`."""
    with transaction(engine()) as session:
        cycle_id = cycle_service.due_cycle(session, plan, moment).id
    send_step("close_cycle", plan, moment.isoformat())
    with progress(quiet) as bar:
        task = bar.add_task(f"charging {plan}", total=None)

        def closed() -> SharingCycle | None:
            with transaction(engine()) as session:
                cycle = session.get(SharingCycle, cycle_id)
                done = cycle_service.chunks_done(session, cycle_id)
            bar.update(task, total=cycle.chunks or None, completed=done)
            return cycle if cycle.status == cycle_service.CycleStatus.CLOSED else None

        return wait_for(closed, timeout, f"closing {plan} cycle {cycle_id}")


def settle_arrears(plan: str, member_ref: str) -> dict[str, int]:
    """Collect a member's arrears now, through the payment gateway, and say what was paid."""
    with transaction(engine()) as session:
        debits = payment_service.claim_arrears(session, plan, member_ref)
    if not debits:
        return {"debits": 0, "collected_fen": 0, "still_unpaid": 0}
    items = [payments.DebitItem(d.key, d.account, d.amount_fen) for d in debits]
    results = asyncio.run(payments.debit(items))
    succeeded = {r.key for r in results if r.succeeded}
    with transaction(engine()) as session:
        collected = payment_service.record_debits(session, debits, succeeded, datetime.now(UTC))
        payment_service.note_settlement(session, debits, succeeded, datetime.now(UTC))
    return {
        "debits": len(debits),
        "collected_fen": collected,
        "still_unpaid": len(debits) - len(succeeded),
    }


def wait_for_money(cycle_ids: list[int], timeout: float) -> None:
    """Wait until the cycles' debits have answers and their payouts are made."""

    def settled() -> bool | None:
        with transaction(engine()) as session:
            return payment_service.money_settled(session, cycle_ids) or None

    wait_for(settled, timeout, "collecting the debits and paying out")


def wait_for_claims(timeout: float) -> dict[str, int]:
    """Wait until no claim is in a working state; returns the counts by state."""

    def settled() -> dict[str, int] | None:
        with transaction(engine()) as session:
            counts = claim_service.counts_by_state(session)
        return None if any(counts.get(s) for s in WORKING) else counts

    return wait_for(settled, timeout, "processing the submitted claims")


@contextmanager
def worker_in_this_process() -> Iterator[None]:
    """A real Celery worker (solo pool, every queue) on a thread of this process.

    The embedded default uses it: SQLite takes one writer, so one worker is the right fleet.
    """
    import workers  # noqa: F401  (registers the tasks on the app)

    # A task that fails must say so on the console, not leave the operator waiting in silence.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The file queue has no host name, and kombu says so on every connection: not news.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
    # A chain's next link is sent through the current app; make it ours in every thread.
    app.finalize()
    app.set_current()
    app.set_default()
    worker = app.WorkController(
        concurrency=1,
        pool="solo",
        queues=list(QUEUES),
        hostname="huzhu-demo@localhost",
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="huzhu-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        # How Celery's own embedded worker stops: ask the consumer loop to end, then join it.
        worker_state.should_terminate = 0
        thread.join(15)
        worker_state.should_terminate = None
