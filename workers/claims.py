"""The claim chain: accept_claim | review_claim | announce_claim (intake, review, announce)."""

from celery import Task

from broker.app import app
from broker.hospital import fetch_evidence
from broker.http import run
from broker.settings import get_settings
from domain.claims import Reason, State
from domain.db import commit_without_waiting
from domain.services import claims, disputes, review
from workers.base import log, moment, now, task_options, unit_of_work


def _guarded(task: Task, claim_id: int, expected: State) -> bool:
    """Count a redelivered step; one that keeps coming back stops and waits for a person.

    Only redeliveries are counted: the broker marks a message it restores (after a worker was
    killed mid-step, or at a warm shutdown) as redelivered. A first delivery, the usual case,
    costs no write; the sweep counts the steps it sends again itself. Celery's own retries of
    a transient error (a lock time-out) are not counted.
    """
    redelivered = (task.request.delivery_info or {}).get("redelivered")
    if task.request.retries or not redelivered:
        return True
    with unit_of_work() as session:
        # A count lost in a database crash only gives the step one more try.
        commit_without_waiting(session)
        allowed = claims.count_attempt(session, claim_id, expected, now())
    if not allowed:
        log.error("claim %s: step for %s failed too often; needs attention", claim_id, expected)
    return allowed


@app.task(bind=True, **task_options("accept_claim"))
def accept_claim(self: Task, claim_id: int) -> int:
    if _guarded(self, claim_id, State.RECEIVED):
        with unit_of_work() as session:
            claim = claims.accept(session, claim_id, now())
            log.info("claim %s accepted: %s", claim_id, claim.state)
    return claim_id


@app.task(bind=True, **task_options("review_claim"))
def review_claim(self: Task, claim_id: int) -> int:
    """Ask the hospital (outside any transaction: no lock waits on the network), then decide.

    An unreachable hospital raises Unavailable: the claim stays under review and the task
    retries with backoff."""
    if not _guarded(self, claim_id, State.UNDER_REVIEW):
        return claim_id
    with unit_of_work() as session:
        request = claims.evidence_request(session, claim_id)
    if request is None:
        return claim_id
    evidence = run(fetch_evidence(request))
    with unit_of_work() as session:
        seed = get_settings().review_sample_seed.get_secret_value().encode()
        claim = claims.review_claim(session, claim_id, now(), evidence, seed)
        log.info("claim %s reviewed: %s %s", claim_id, claim.state, claim.reason_code or "")
        refund = claim.reason_code == Reason.INSIDE_WAITING_PERIOD
    if refund:
        app.send_task("huzhu.pay_pending")
    return claim_id


@app.task(**task_options("announce_claim"))
def announce_claim(claim_id: int) -> int:
    with unit_of_work() as session:
        claim = claims.schedule(session, claim_id, now())
        log.info("claim %s: %s", claim_id, claim.state)
    return claim_id


@app.task(**task_options("escalate_reviews"))
def escalate_reviews(at: str | None = None) -> int:
    """Every few minutes: claims waiting for a person past their escalation time are escalated
    (shown first); any waiting without a task gets one."""
    when = moment(at)
    with unit_of_work() as session:
        review.close_decided(session)
        opened = review.open_tasks(session, when)
        escalated = review.escalate_overdue(session, when)
    if escalated:
        log.warning("escalated reviews: %s", ", ".join(escalated))
    return opened + len(escalated)


@app.task(**task_options("close_juries"))
def close_juries(at: str | None = None) -> int:
    """Count the votes of every jury whose window has closed; an approved claim resumes its way
    to the next announcement."""
    with unit_of_work() as session:
        approved = disputes.close_due_juries(session, moment(at))
    for claim_id in approved:
        app.send_task("huzhu.announce_claim", args=(claim_id,))
    return len(approved)
