"""What the fault tests share: a worker in its own process group, the sweep beat would send,
counting claims and chunks, and the invariant checker run after every fault."""

import subprocess
import time

from sqlmodel import func, select

from broker.database import engine
from broker.proofkeys import proof_keys
from broker.settings import get_settings
from broker.submit import send_step
from domain.claims import WORKING
from domain.db import transaction
from domain.models import ChargeChunk, Claim
from domain.plans import get_plan
from domain.review import sample_draw, sampling_reason
from domain.services import audit
from tests.integration import support

VISIBILITY = 3  # seconds before Redis hands an unacknowledged task to another worker


def start_worker(env: dict, log) -> subprocess.Popen:
    return support.start_worker(env, log, own_group=True)


def sweeping(check, period: float = 2.0):
    """`check`, sending the sweep every `period` seconds meanwhile, as beat does every five
    minutes: one sweep is not enough when it runs while the restarted worker is still busy."""
    last = time.monotonic()

    def swept():
        nonlocal last
        if time.monotonic() - last >= period:
            send_step("redrive_stuck")
            last = time.monotonic()
        return check()

    return swept


def invariants_hold() -> audit.AuditReport:
    """The invariant checker (`huzhu audit`) after a fault: books, charges, payouts, claims."""
    with transaction(engine()) as session:
        report = audit.audit(session, keys=proof_keys())
    assert report.balanced, report.problems
    return report


def all_decided() -> bool | None:
    """No claim left in a working state (None, for wait_until, while some are)."""
    return not any(counts().get(state) for state in WORKING) or None


def counts() -> dict[str, int]:
    with transaction(engine()) as session:
        return dict(session.exec(select(Claim.state, func.count()).group_by(Claim.state)).all())


def approved_by_the_rules(submission_ids: list[str], plan: str = "critical-illness") -> dict:
    """The states of claims the rules approve: scheduled, or waiting for a person where the
    sample draws them for a second look (the same seed draws the same claims)."""
    seed = get_settings().review_sample_seed.get_secret_value().encode()
    rules = get_plan(plan)
    sampled = sum(
        1 for sid in submission_ids if sampling_reason(sample_draw(seed, plan, sid), 0, rules)
    )
    found = {"scheduled": len(submission_ids) - sampled, "needs_review": sampled}
    return {state: n for state, n in found.items() if n}


def chunks_done() -> int:
    with transaction(engine()) as session:
        return session.exec(select(func.count()).select_from(ChargeChunk)).one()
