"""A worker killed outright (SIGKILL, the whole process group) in the middle of review_claim:
after a restart every claim reaches its decision once, and nothing is lost or doubled."""

import os
import signal
import time

import pytest
from sqlmodel import func, select

from broker.database import engine
from broker.submit import send_step, submit_claim
from domain.db import transaction
from domain.models import ClaimEvent
from sandbox.faults import Faults
from sandbox.hospital import make_hospital_app
from sandbox.server import serving
from tests.faults.support import (
    VISIBILITY,
    all_decided,
    counts,
    invariants_hold,
    start_worker,
    sweeping,
)
from tests.integration import support
from tests.integration.scenario import enrol, membership, submission
from tests.integration.support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]


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
