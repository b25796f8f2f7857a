"""A worker killed outright (SIGKILL, the whole process group) in the middle of review_claim:
after a restart every claim reaches its decision once, and nothing is lost or doubled."""

import os
import signal
import subprocess
import time

import pytest
from sqlmodel import func, select

from broker.database import engine
from broker.submit import send_step, submit_claim
from domain.claims import WORKING
from domain.db import transaction
from domain.models import Claim, ClaimEvent
from domain.services import audit
from sandbox.faults import Faults
from sandbox.hospital import make_hospital_app
from sandbox.server import serving
from tests.integration import support
from tests.integration.scenario import enrol, membership, submission
from tests.integration.support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]
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
        report = audit.audit(session)
    assert report.balanced, report.problems
    return report


def all_decided() -> bool | None:
    """No claim left in a working state (None, for wait_until, while some are)."""
    return not any(counts().get(state) for state in WORKING) or None


def counts() -> dict[str, int]:
    with transaction(engine()) as session:
        return dict(session.exec(select(Claim.state, func.count()).group_by(Claim.state)).all())


def test_a_worker_killed_mid_review_loses_and_doubles_nothing(postgres_stack, tmp_path):
    enrol(membership(20, 0))
    slow = make_hospital_app(faults=Faults(latency_ms=1500))
    with serving(slow) as hospital, (tmp_path / "worker.log").open("w") as log:
        env = postgres_stack.env | {
            "HUZHU_HOSPITAL_URL": hospital,
            "HUZHU_VISIBILITY_TIMEOUT": str(VISIBILITY),
            "HUZHU_STUCK_AFTER_SECONDS": "1",
        }
        first = start_worker(env, log)
        for n in range(8):
            submit_claim(submission(f"k-{n}", f"C{n:04d}", "C73"))
        wait_until(
            lambda: counts().get("under_review", 0) >= 2,
            60,
            "reviews under way",
            tmp_path / "worker.log",
        )
        time.sleep(0.5)  # inside the hospital's 1.5 s answer
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert counts().get("under_review", 0) >= 1, "the kill must land mid-review"
        time.sleep(VISIBILITY + 1)  # the messages the dead worker held are now due again
        second = start_worker(env, log)
        try:
            # A dead worker may hold kombu's restore lock for minutes; the sweep (sent by beat
            # every five minutes) re-sends from the database whatever Redis does not give back.
            send_step("redrive_stuck")
            wait_until(
                sweeping(all_decided),
                120,
                "every claim decided after the restart",
                tmp_path / "worker.log",
            )
        finally:
            support.stop_worker(second)
    assert counts() == {"scheduled": 8}
    with transaction(engine()) as session:
        approvals = session.exec(
            select(ClaimEvent.claim_id, func.count())
            .where(ClaimEvent.to_state == "approved")
            .group_by(ClaimEvent.claim_id)
        ).all()
    assert sorted(n for _, n in approvals) == [1] * 8  # each decided exactly once
    assert invariants_hold().claims == {"scheduled": 8}
