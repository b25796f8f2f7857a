"""Redis emptied mid-run (every message truly lost): the periodic sweep finds each claim stuck
in a working state in the database and sends its step again; nothing is lost."""

import os
import signal
import time

import pytest

from broker.submit import send_step, submit_claim
from domain.claims import WORKING
from sandbox.faults import Faults
from sandbox.hospital import make_hospital_app
from sandbox.server import serving
from tests.faults.support import (
    all_decided,
    approved_by_the_rules,
    counts,
    invariants_hold,
    start_worker,
    sweeping,
)
from tests.integration import support
from tests.integration.fixtures import empty_broker
from tests.integration.scenario import enrol, membership, submission
from tests.integration.support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_the_sweep_redrives_every_claim_after_the_broker_lost_its_messages(
    postgres_stack, tmp_path
):
    enrol(membership(20, 0))
    with (
        serving(make_hospital_app(faults=Faults(latency_ms=1000))) as hospital,
        (tmp_path / "worker.log").open("w") as log,
    ):
        env = postgres_stack.env | {
            "HUZHU_HOSPITAL_URL": hospital,
            "HUZHU_STUCK_AFTER_SECONDS": "1",
        }
        first = start_worker(env, log)
        for n in range(10):
            submit_claim(submission(f"lost-{n}", f"C{n:04d}", "C73"))
        wait_until(
            lambda: counts().get("under_review", 0) >= 1,
            60,
            "reviews under way",
            tmp_path / "worker.log",
        )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        settings = postgres_stack.settings
        empty_broker(settings.broker_url, settings.broker_key_prefix)  # every message gone
        stuck = sum(counts().get(state, 0) for state in WORKING)
        assert stuck > 0
        time.sleep(1.5)  # older than HUZHU_STUCK_AFTER_SECONDS
        second = start_worker(env, log)
        try:
            send_step("redrive_stuck")  # what beat sends every five minutes
            wait_until(
                sweeping(all_decided), 120, "every stuck claim re-driven", tmp_path / "worker.log"
            )
        finally:
            support.stop_worker(second)
    assert invariants_hold().claims == approved_by_the_rules([f"lost-{n}" for n in range(10)])
