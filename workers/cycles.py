"""The sharing cycle: publish_announcements, close_cycle and its charge_chunk fan-out (cycle)."""

from sqlalchemy.exc import IntegrityError

from broker.app import app
from broker.proofkeys import proof_keys
from broker.settings import get_settings
from domain.models import ChargeChunk, SharingCycle
from domain.services import cycles, winddown
from workers.base import log, moment, now, task_options, unit_of_work


@app.task(**task_options("publish_announcements"))
def publish_announcements(plan: str, at: str | None = None) -> int:
    with unit_of_work() as session:
        cycle = cycles.publish(session, plan, moment(at))
        log.info("cycle %s of %s: %s, %s cases", cycle.id, plan, cycle.status, cycle.cases)
    return cycle.id


@app.task(**task_options("close_cycle"))
def close_cycle(plan: str, at: str | None = None) -> int | None:
    """Freeze the cycle's figures once, then send every chunk that has not recorded itself."""
    try:
        with unit_of_work() as session:
            cycle = cycles.begin_close(session, plan, moment(at), get_settings().chunk_members)
    except cycles.NothingToClose as nothing:
        log.info("%s", nothing)  # a beat with nothing due, or a close redelivered days later
        return None
    log.info("cycle %s of %s: %s", cycle.id, plan, cycle.status)
    dispatch_chunks(cycle.id)
    return cycle.id


def dispatch_chunks(cycle_id: int) -> None:
    """Send every chunk of a closing cycle that has not recorded itself (again, if need be)."""
    with unit_of_work() as session:
        cycle = session.get(SharingCycle, cycle_id)
        if cycle is None or cycle.status != cycles.CycleStatus.CLOSING:
            return
        pending = cycles.pending_chunks(session, cycle)
    for chunk_no in pending:
        charge_chunk.delay(cycle_id, chunk_no)
    if not pending:
        _finalise(cycle_id)


@app.task(**task_options("charge_chunk"))
def charge_chunk(cycle_id: int, chunk_no: int) -> int:
    try:
        with unit_of_work() as session:
            cycles.charge_chunk(session, cycle_id, chunk_no, now(), proof_keys())
    except IntegrityError:
        # Another run of the same chunk may have committed first: its rows stand, ours roll
        # back. Anything else breaking a key is a real fault and is raised.
        with unit_of_work() as session:
            if session.get(ChargeChunk, (cycle_id, chunk_no)) is None:
                raise
        log.warning("cycle %s chunk %s: already charged by a concurrent run", cycle_id, chunk_no)
    _finalise(cycle_id)
    return cycle_id


def _finalise(cycle_id: int) -> None:
    with unit_of_work() as session:
        cycle = cycles.finalise(session, cycle_id, now(), proof_keys())
    if cycle is not None and cycle.collection_round == 0:
        # The books are closed: collect the charges and pay the patients (payments queue).
        app.send_task("huzhu.collect_debits", args=(cycle_id, cycle.closing_at.isoformat()))
        app.send_task("huzhu.pay_out_cycle", args=(cycle_id,))
    if cycle is not None:
        log.info(
            "cycle %s closed: share %s fen, charged %s fen",
            cycle_id,
            cycle.share_fen,
            cycle.charged_fen,
        )


@app.task(**task_options("advance_wind_downs"))
def advance_wind_downs(at: str | None = None) -> int:
    """Every few minutes: each plan winding down reaches the stage its clock says (memberships
    end at the end, refunds are made); refunds made are sent by the payments queue."""
    when = moment(at)
    with unit_of_work() as session:
        stages = {
            plan: winddown.advance(session, plan, when) for plan in winddown.wind_downs(session)
        }
    for plan, stage in stages.items():
        log.info("%s: %s", plan, stage)
    if stages:
        app.send_task("huzhu.pay_pending")
    return len(stages)
