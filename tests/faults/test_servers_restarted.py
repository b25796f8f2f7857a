"""The servers themselves restarted under load: Redis (which keeps nothing here, so every queued
message is lost with it) in the middle of the claim chains, and PostgreSQL in the middle of
charging a cycle. The workers reconnect, the steps retry, the sweep re-sends what was lost, and
the invariant checker finds every claim decided once and every member charged once."""

import time

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import func, select

from broker.database import engine
from broker.submit import send_step, submit_claim
from domain.db import transaction
from domain.models import Charge, SharingCycle
from sandbox.faults import Faults
from sandbox.hospital import make_hospital_app
from sandbox.server import serving
from tests.faults.support import (
    all_decided,
    approved_by_the_rules,
    chunks_done,
    counts,
    invariants_hold,
    start_worker,
    sweeping,
)
from tests.integration.scenario import CLOSE_AT, CRITICAL, enrol, membership, submission
from tests.integration.support import wait_until
from tests.integration.test_redelivery import prepare_announced_cycle

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def servers(own_postgres, own_redis):
    """The session's own servers, which these tests restart; never an outside one."""
    if own_postgres is None or own_redis is None:
        pytest.skip("HUZHU_TEST_PG/HUZHU_TEST_REDIS name outside servers, which no test restarts")
    return own_postgres, own_redis


def restart_postgres(server) -> None:
    server.restart()
    wait_until(_database_answers, 60, "PostgreSQL back")


def _database_answers() -> bool:
    try:
        with transaction(engine()) as session:
            return session.exec(select(func.count()).select_from(SharingCycle)).one() >= 0
    except OperationalError:
        return False


def test_redis_restarted_mid_chain_loses_no_claim(postgres_stack, servers, tmp_path):
    enrol(membership(20, 0))
    log_path = tmp_path / "worker.log"
    with (
        serving(make_hospital_app(faults=Faults(latency_ms=400))) as hospital,
        log_path.open("w") as log,
    ):
        env = postgres_stack.env | {
            "HUZHU_HOSPITAL_URL": hospital,
            "HUZHU_STUCK_AFTER_SECONDS": "1",
        }
        worker = start_worker(env, log)
        try:
            for n in range(12):
                submit_claim(submission(f"redis-{n}", f"C{n:04d}", "C73"))
            wait_until(lambda: counts().get("scheduled", 0) >= 2, 60, "chains under way", log_path)
            servers[1].restart()  # nothing kept on disk: every queued message is lost
            assert worker.poll() is None, "the worker must ride out the restart"
            wait_until(
                sweeping(all_decided), 180, "every claim decided after the restart", log_path
            )
        finally:
            worker.terminate()
            worker.wait(60)
    report = invariants_hold()
    assert report.claims == approved_by_the_rules([f"redis-{n}" for n in range(12)])


def test_postgres_restarted_while_charging_charges_each_member_once(
    postgres_stack, servers, tmp_path
):
    members = 6000
    prepare_announced_cycle(critical=members)
    log_path = tmp_path / "worker.log"
    chunk = 10  # 600 chunks: the restart lands while they are being written
    env = postgres_stack.env | {"HUZHU_CHUNK_SIZE": str(chunk), "HUZHU_STUCK_AFTER_SECONDS": "1"}
    with log_path.open("w") as log:
        worker = start_worker(env, log)
        try:
            send_step("close_cycle", CRITICAL, CLOSE_AT.isoformat())
            wait_until(lambda: chunks_done() >= 20, 60, "charging under way", log_path)
            assert chunks_done() < members // chunk, "the restart must begin mid-charging"
            restart_postgres(servers[0])
            assert worker.poll() is None, "the worker must ride out the restart"

            def closed():
                with transaction(engine()) as session:
                    return session.exec(select(SharingCycle)).one().status == "closed" or None

            wait_until(sweeping(closed), 180, "the cycle closed after the restart", log_path)
        finally:
            worker.terminate()
            worker.wait(60)
    time.sleep(0.5)
    with transaction(engine()) as session:
        rows, distinct = session.exec(
            select(func.count(), func.count(func.distinct(Charge.member_id)))
        ).one()
    assert rows == distinct == members
    invariants_hold()
