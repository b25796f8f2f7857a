"""A worker killed in the middle of charging a cycle: restarted, the close finishes with one
charge per member and balanced books."""

import os
import signal
import time

import pytest
from sqlmodel import func, select

from broker.database import engine
from broker.proofkeys import proof_keys
from broker.submit import send_step
from domain.db import transaction
from domain.models import Charge, SharingCycle
from domain.services import audit as audit_service
from tests.faults.support import VISIBILITY, chunks_done, start_worker, sweeping
from tests.integration import support
from tests.integration.scenario import CLOSE_AT, CRITICAL
from tests.integration.support import wait_until
from tests.integration.test_redelivery import prepare_announced_cycle

pytestmark = [pytest.mark.slow, pytest.mark.integration]
MEMBERS = 6000


def test_a_worker_killed_while_charging_a_cycle_charges_each_member_once(postgres_stack, tmp_path):
    prepare_announced_cycle(critical=MEMBERS)
    env = postgres_stack.env | {
        "HUZHU_CHUNK_SIZE": "25",  # 240 chunks: the kill lands while they are being written
        "HUZHU_VISIBILITY_TIMEOUT": str(VISIBILITY),
        "HUZHU_STUCK_AFTER_SECONDS": "1",
    }
    with (tmp_path / "worker.log").open("w") as log:
        first = start_worker(env, log)
        send_step("close_cycle", CRITICAL, CLOSE_AT.isoformat())
        wait_until(lambda: chunks_done() >= 20, 60, "charging under way", tmp_path / "worker.log")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        done_at_kill = chunks_done()
        assert done_at_kill < MEMBERS // 25, "the kill must land before the last chunk"
        time.sleep(VISIBILITY + 1)
        second = start_worker(env, log)
        try:
            # The sweep re-sends the chunks lost with the dead worker once the close stalls.

            def closed():
                with transaction(engine()) as session:
                    return session.exec(select(SharingCycle)).one().status == "closed" or None

            wait_until(
                sweeping(closed), 120, "the cycle closed after the restart", tmp_path / "worker.log"
            )
        finally:
            support.stop_worker(second)
    with transaction(engine()) as session:
        rows, members = session.exec(
            select(func.count(), func.count(func.distinct(Charge.member_id)))
        ).one()
        report = audit_service.audit(session, keys=proof_keys())
    assert rows == members == MEMBERS
    assert report.balanced, report.problems
