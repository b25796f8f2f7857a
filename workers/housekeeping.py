"""The periodic sweep: the database is the source of truth, so lost messages are sent again."""

from datetime import timedelta

from broker.app import app
from broker.settings import get_settings
from broker.submit import claim_chain
from domain.claims import State
from domain.services import claims, cycles, payments
from workers.base import log, now, task_options, unit_of_work
from workers.cycles import dispatch_chunks

RESUME_AT = {
    State.RECEIVED: "accept_claim",
    State.UNDER_REVIEW: "review_claim",
    State.APPROVED: "announce_claim",
}


@app.task(**task_options("redrive_stuck"))
def redrive_stuck() -> int:
    """Resend the step of every claim sitting too long in a working state, and the chunks of
    every closing cycle; each step is idempotent, so a step still in flight loses nothing."""
    before = now() - timedelta(seconds=get_settings().stuck_after_seconds)
    with unit_of_work() as session:
        # A step sent again is counted like a redelivered one, before it is sent: a claim whose
        # step keeps failing stops coming back and waits for a person.
        stuck = [
            (claim_id, state)
            for claim_id, state in claims.stuck_claims(session, before)
            if claims.count_attempt(session, claim_id, State(state), now())
        ]
        closing = cycles.stalled_closing_cycles(session, before)
        unpaid = payments.settled_without_payout(session)
    for claim_id, state in stuck:
        claim_chain(claim_id, start=RESUME_AT[state]).apply_async()
    for cycle_id in closing:
        try:
            dispatch_chunks(cycle_id)
        except Exception:  # one broken cycle must not stop the sweep of the others
            log.exception("cycle %s: could not resume its close", cycle_id)
    for cycle_id in unpaid:  # a lost pay_out_cycle: its settled claims would never be paid
        app.send_task("huzhu.pay_out_cycle", args=(cycle_id,))
    if stuck or closing or unpaid:
        log.warning(
            "re-drove %s claims, %s closing cycles and the payouts of %s cycles",
            len(stuck),
            len(closing),
            len(unpaid),
        )
    return len(stuck)
