"""A burst of 20,000 claims (HUZHU_BURST_CLAIMS for another size) while the worker is
restarted twice, once killed outright and once stopped warm: every line sent is accounted for,
each claim decided once, and the books still balance."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlmodel import func, select

from broker.database import engine
from broker.submit import send_step, submit_claim
from domain.claims import WORKING
from domain.db import transaction
from domain.models import ClaimEvent
from domain.services.claims import counts_by_reason
from tests.faults.support import all_decided, approved_by_the_rules, counts, invariants_hold
from tests.integration import support
from tests.integration.scenario import enrol, membership, submission
from tests.integration.support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]
# Fewer for a quick look by hand: HUZHU_BURST_CLAIMS=2000 pytest tests/faults/test_burst.py.
CLAIMS = int(os.environ.get("HUZHU_BURST_CLAIMS", "20000"))
CODES = ("C73", "I21.0", "C34.1", "C18.7")  # decided by the plan's rules, not by a reviewer
UNKNOWN_EVERY = 50  # a claim for someone who is not a member: rejected at intake
MALFORMED_EVERY = 97  # a claim without its diagnosis date: rejected as malformed
REPEAT_EVERY = 100  # a line sent again later in the burst: still one claim
# py-spy showed a worker child waiting on PostgreSQL half of the time, so four processes keep
# the two cores busier than two.
CONCURRENCY = 4
# The whole burst must end within this, so that a hang fails CI rather than outlasting it; at
# 20,000 claims that is 20 minutes, about three times what it takes on this machine.
PER_CLAIM = 0.06


def line(n: int) -> str:
    if n % UNKNOWN_EVERY == 0:
        return submission(f"burst-{n}", f"X{n:05d}", "C73")
    if n % MALFORMED_EVERY == 0:
        return submission(f"burst-{n}", f"C{n:04d}", "C73", diagnosed_on=None)
    return submission(f"burst-{n}", f"C{n:04d}", CODES[n % len(CODES)])


def burst() -> list[str]:
    """Every claim once, and every hundredth again fifty lines later, as a retrying app would."""
    lines = []
    for n in range(CLAIMS):
        lines.append(line(n))
        if n % REPEAT_EVERY == REPEAT_EVERY // 2:
            lines.append(line(n - REPEAT_EVERY // 2))
    return lines


def send(lines: list[str]) -> tuple[int, int]:
    """Submit every line as the intake API does; (new claims, repeats)."""
    created = sum(submit_claim(raw).created for raw in lines)
    return created, len(lines) - created


@contextmanager
def hospital() -> Iterator[str]:
    """The sandbox hospital in a process of its own, as in the fleet: served from a thread of
    this process it would share one interpreter with the burst's sender and slow both."""
    command = [sys.executable, "-m", "sandbox", "hospital", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def start_worker(env: dict, log) -> subprocess.Popen:
    return support.start_worker(env, log, concurrency=CONCURRENCY, own_group=True)


def decided() -> int:
    return sum(n for state, n in counts().items() if state not in WORKING)


def swept_when_stalled(check, quiet: float = 10.0):
    """`check`, sending the sweep whenever no claim has been decided for `quiet` seconds.

    Lost messages show as a stall; sweeping while the queues are still full would only send
    their claims a second time (each step is idempotent, but the burst would take longer)."""
    last_count, last_change = -1, time.monotonic()

    def swept():
        nonlocal last_count, last_change
        count = decided()
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            send_step("redrive_stuck")
            last_change = time.monotonic()
        return check()

    return swept


def test_a_burst_with_two_worker_restarts_accounts_for_every_claim(postgres_stack, tmp_path):
    deadline = time.monotonic() + max(300, CLAIMS * PER_CLAIM)

    def left() -> float:
        return deadline - time.monotonic()

    lines = burst()
    enrol(membership(CLAIMS, 0))
    log_path = tmp_path / "worker.log"
    with hospital() as hospital_url, log_path.open("w") as log:
        env = postgres_stack.env | {
            "HUZHU_HOSPITAL_URL": hospital_url,
            "HUZHU_VISIBILITY_TIMEOUT": "10",
            "HUZHU_STUCK_AFTER_SECONDS": "5",
        }
        worker = start_worker(env, log)
        try:
            with ThreadPoolExecutor(1) as pool:
                sending = pool.submit(send, lines)
                wait_until(
                    lambda: decided() >= CLAIMS // 3,
                    left(),
                    "a third decided",
                    log_path,
                )
                os.killpg(worker.pid, signal.SIGKILL)  # restart 1: the host dies
                worker.wait()
                worker = start_worker(env, log)
                wait_until(
                    lambda: decided() >= 2 * CLAIMS // 3,
                    left(),
                    "two thirds decided",
                    log_path,
                )
                worker.send_signal(signal.SIGTERM)  # restart 2: a deploy, warm
                worker.wait(90)
                worker = start_worker(env, log)
                created, repeats = sending.result()
            wait_until(swept_when_stalled(all_decided), left(), "every claim decided", log_path)
        finally:
            support.stop_worker(worker, grace=90)

    unknown = len(range(0, CLAIMS, UNKNOWN_EVERY))
    malformed = sum(1 for n in range(0, CLAIMS, MALFORMED_EVERY) if n % UNKNOWN_EVERY)
    assert (created, repeats) == (CLAIMS, len(lines) - CLAIMS)
    good = [f"burst-{n}" for n in range(CLAIMS) if n % UNKNOWN_EVERY and n % MALFORMED_EVERY]
    # With sampling on: the rules' approvals the draw picks wait for a person's second look.
    by_rules = approved_by_the_rules(good)
    assert counts() == by_rules | {"rejected": unknown + malformed}
    with transaction(engine()) as session:
        assert counts_by_reason(session) == {"unknown_member": unknown, "malformed": malformed}
        approvals = session.exec(
            select(func.count(), func.count(func.distinct(ClaimEvent.claim_id))).where(
                ClaimEvent.to_state == "approved"
            )
        ).one()
    assert approvals == (by_rules["scheduled"],) * 2  # each approved exactly once
    assert invariants_hold().claims == counts()
