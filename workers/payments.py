"""The payments queue: debits of a closed cycle, retries and arrears, payouts and refunds."""

from sqlmodel import select

from broker import payments as provider
from broker.app import app
from broker.http import run
from broker.settings import get_settings
from domain.models import CycleStatus, SharingCycle
from domain.services import payments
from workers.base import log, moment, now, task_options, unit_of_work


@app.task(**task_options("collect_debits"))
def collect_debits(cycle_id: int, at: str | None = None) -> int:
    """Open the day's round of debits of a closed cycle (if one is due) and send its batches;
    after the retry window, leave arrears and remove members unpaid twice in a row."""
    when = moment(at)
    with unit_of_work() as session:
        round_no, batches = payments.open_round(
            session, cycle_id, when, get_settings().debit_batch_size
        )
        removed = payments.close_window(session, cycle_id, when)
    for batch_no in range(batches):
        debit_batch.delay(cycle_id, batch_no, round_no)
    if removed:
        log.warning("cycle %s: %s members removed for non-payment", cycle_id, len(removed))
    return batches


@app.task(**task_options("debit_batch"))
def debit_batch(cycle_id: int, batch_no: int, round_no: int) -> int:
    with unit_of_work() as session:
        debits = payments.claim_batch(session, cycle_id, batch_no, round_no)
    if not debits:
        return 0
    items = [provider.DebitItem(d.key, d.account, d.amount_fen) for d in debits]
    results = run(provider.debit(items))
    succeeded = {r.key for r in results if r.succeeded}
    with unit_of_work() as session:
        collected = payments.record_debits(session, debits, succeeded, now())
    app.send_task("huzhu.pay_pending")  # refunds of waiting-period shares, if any were made
    log.info(
        "cycle %s batch %s round %s: %s of %s debits, %s fen",
        cycle_id,
        batch_no,
        round_no,
        len(succeeded),
        len(debits),
        collected,
    )
    return len(succeeded)


@app.task(**task_options("collect_open_cycles"))
def collect_open_cycles(at: str | None = None) -> int:
    """Daily: every closed cycle whose collection is still open gets its round (or its end)."""
    with unit_of_work() as session:
        open_cycles = session.exec(
            select(SharingCycle.id).where(
                SharingCycle.status == CycleStatus.CLOSED,
                SharingCycle.arrears_settled_at.is_(None),  # type: ignore[union-attr]
            )
        ).all()
    for cycle_id in open_cycles:
        collect_debits.delay(cycle_id, at)
    return len(open_cycles)


@app.task(**task_options("pay_out_cycle"))
def pay_out_cycle(cycle_id: int) -> int:
    with unit_of_work() as session:
        pending = payments.create_cycle_payouts(session, cycle_id, now())
    for payout_id in pending:
        pay_out.delay(payout_id)
    return len(pending)


@app.task(**task_options("pay_out"))
def pay_out(payout_id: int) -> int:
    """Pay once: the key is the payout's own, so a redelivered or retried request is answered
    by the provider without paying again."""
    with unit_of_work() as session:
        payout = payments.claim_payout(session, payout_id, now())
    if payout is None:
        return payout_id
    result = run(provider.pay(payout.key, payout.account, payout.amount_fen, payout.purpose))
    with unit_of_work() as session:
        recorded = payments.record_payout(
            session, payout_id, result.succeeded, result.provider_ref, result.reason, now()
        )
    log.info("payout %s: %s", payout_id, recorded.status if recorded else "gone")
    return payout_id


@app.task(**task_options("pay_pending"))
def pay_pending() -> int:
    with unit_of_work() as session:
        pending = payments.pending_payouts(session)
    for payout_id in pending:
        pay_out.delay(payout_id)
    return len(pending)
