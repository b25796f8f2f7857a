"""Benchmark: claims through accept_claim | review_claim | announce_claim on Redis + PostgreSQL,
against three-link chains of no-op tasks on the same worker."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from functools import cache
from pathlib import Path

import redis
from celery import chain
from sqlmodel import Session, func, select

from benchmarks.common import (
    REDIS_URL,
    Result,
    children_peak_rss_mb,
    empty_broker,
    proof_keys_of,
    scratch_database,
    stop,
    stopwatch,
    worker_env,
)
from benchmarks.noop_tasks import DONE_KEY, noop, noop_last
from broker.app import reconfigure
from broker.database import engine
from broker.migrate import upgrade
from broker.settings import Settings, get_settings
from broker.submit import submit_claim
from domain.calendar import SHANGHAI, local_date
from domain.claims import WORKING
from domain.members import Enrolment
from domain.models import Claim
from domain.services.members import ImportReport, import_members

GOAL = 0.3
PLAN = "critical-illness"
# Illnesses the plan's rules decide (not a reviewer): with the sandbox hospital confirming every
# diagnosis, each claim is approved and ends `scheduled` after doing the work of all three steps.
CODES = ("C73", "I21.0", "C34.1", "C18.7")
QUEUES = "intake,review,announce,cycle,payments"
# Claims and no-op chains run before the clock starts, so that neither side pays for the
# worker children's first imports and connections.
WARM_UP = 20
POLL = 0.2
ROOT = Path(__file__).resolve().parents[1]
SUCCEEDED = re.compile(r"Task (\S+)\[[^\]]+\] succeeded in ([0-9.e-]+)s")


@dataclass
class Worker:
    """The one `celery worker` both sides run on, and its log for when something goes wrong."""

    process: subprocess.Popen
    log: Path

    def wait_until(self, count: Callable[[], int], target: int, what: str) -> None:
        # Generous: a loaded two-core machine runs a few hundred claims a second at best.
        deadline = time.monotonic() + 120 + target * 0.2
        while count() < target:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited during {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {count()} of {target} done in time\n{self.tail()}")
            time.sleep(POLL)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def mean_run_ms(self) -> dict[str, float]:
        """Mean run time per task name, from the worker's 'succeeded in' lines."""
        runs: dict[str, list[float]] = defaultdict(list)
        for name, seconds in SUCCEEDED.findall(self.log.read_text(errors="replace")):
            runs[name].append(float(seconds))
        return {name: 1000 * sum(s) / len(s) for name, s in runs.items()}


def claimant(n: int, today) -> Enrolment:
    """A member of 30 to 54 who joined 300 days ago: past the waiting period, inside the ages."""
    age = 30 + n % 25
    return Enrolment(
        member_ref=f"B{n:06d}",
        plan=PLAN,
        birth_date=today.replace(year=today.year - age, month=1, day=1),
        sex="F" if n % 2 else "M",
        province="广东",
        joined_at=datetime.combine(today - timedelta(days=300), clock(10, 0), SHANGHAI),
    )


def submission(n: int, today) -> str:
    data = {
        "submission_id": f"bench-{n}",
        "member_ref": f"B{n:06d}",
        "plan": PLAN,
        "icd10": CODES[n % len(CODES)],
        "diagnosed_on": (today - timedelta(days=10)).isoformat(),
        "hospital": "广州市第一人民医院",
        "accident": False,
    }
    return json.dumps(data, ensure_ascii=False)


def enrol_claimants(count: int) -> list[str]:
    """Enrol one member per claim (so no claim meets another's cap) and return the claims."""
    today = local_date(datetime.now(UTC))
    report = ImportReport()
    rows = ((n + 2, claimant(n, today)) for n in range(count))
    import_members(engine(), rows, report)
    if report.refused:
        raise RuntimeError(f"claimants refused: {report.refused[:3]}")
    return [submission(n, today) for n in range(count)]


def finished_claims() -> int:
    with Session(engine()) as session:
        query = select(func.count()).select_from(Claim).where(Claim.state.not_in(WORKING))
        return session.exec(query).one()


def claim_states() -> dict[str, int]:
    with Session(engine()) as session:
        query = select(Claim.state, func.count()).group_by(Claim.state)
        return dict(session.exec(query).all())


def send_noop_chains(first: int, count: int) -> None:
    """Three links on the claim chain's three queues, sent one chain at a time like claims."""
    for n in range(first, first + count):
        chain(
            noop.si(n).set(queue="intake"),
            noop.si(n).set(queue="review"),
            noop_last.si(n).set(queue="announce"),
        ).apply_async()


def noop_chains_done() -> int:
    settings = get_settings()
    value = _redis(settings.broker).get(f"{settings.broker_key_prefix}{DONE_KEY}")
    return int(value or 0)


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@contextmanager
def running_worker(settings: Settings) -> Iterator[Worker]:
    """One prefork worker of two children on every queue, task events on, logging at INFO as in
    compose; stopped warm (SIGTERM), and killed if it will not stop."""
    log = settings.data_dir / "worker.log"
    command = [
        *(sys.executable, "-m", "celery", "-A", "workers", "worker"),
        *("-Q", QUEUES, "-E", "-l", "INFO", "--pool", "prefork", "-c", "2"),
        *("--include", "benchmarks.noop_tasks", "-n", f"bench-{os.getpid()}@%h"),
    ]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=worker_env(settings), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield Worker(process, log)
    finally:
        stop(process, 30)


def measure(worker: Worker, claims: list[str]) -> dict:
    """Seconds from the first send to the last chain done, for no-op chains and for claims."""
    warm, measured = claims[:WARM_UP], claims[WARM_UP:]
    count = len(measured)
    send_noop_chains(0, WARM_UP)
    for raw in warm:
        submit_claim(raw)
    worker.wait_until(noop_chains_done, WARM_UP, "the no-op warm-up")
    worker.wait_until(finished_claims, WARM_UP, "the claims warm-up")

    with stopwatch() as reference:
        with stopwatch() as reference_sending:
            send_noop_chains(WARM_UP, count)
        worker.wait_until(noop_chains_done, WARM_UP + count, "the no-op chains")
    with stopwatch() as figure:
        with stopwatch() as figure_sending:
            for raw in measured:
                submit_claim(raw)
        worker.wait_until(finished_claims, WARM_UP + count, "the claims")
    return {
        "states": claim_states(),
        "figure": figure[0],
        "reference": reference[0],
        "figure_sending": figure_sending[0],
        "reference_sending": reference_sending[0],
    }


def describe(claims: int, took: dict, runs: dict[str, float], rss: float) -> str:
    mean = ", ".join(f"{name.split('.')[-1]} {ms:.1f}" for name, ms in sorted(runs.items()))
    return (
        f"{claims / took['figure']:.0f} claims/s against {claims / took['reference']:.0f} "
        f"no-op chains/s; sending took {took['figure_sending']:.1f} s (claims) and "
        f"{took['reference_sending']:.1f} s (no-op); claims ended {took['states']} "
        f"(with {WARM_UP} warm-up); mean task run ms: {mean}; "
        f"worker peak RSS {rss:.0f} MB (prefork -c 2, -E, -l INFO)"
    )


def run(claims: int = 5000) -> list[Result]:
    previous = get_settings()
    with scratch_database("chain") as url, tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            data_dir=Path(folder),
            database_url=url,
            broker_url=REDIS_URL,
            broker_key_prefix=f"huzhu-bench-{os.getpid()}:",
            hospital_url="",
            payments_url="",
            **proof_keys_of(Path(folder)),
        )
        reconfigure(settings)
        try:
            upgrade(engine())
            submissions = enrol_claimants(WARM_UP + claims)
            empty_broker(settings)
            with running_worker(settings) as worker:
                took = measure(worker, submissions)
            runs = worker.mean_run_ms()
        finally:
            empty_broker(settings)
            engine().dispose()
            reconfigure(previous)
    # The worker has been waited for, so its children's peaks count among ours.
    result = Result(
        benchmark=f"{claims:,} claims through the claim chain (Redis + PostgreSQL)",
        figure=round(took["figure"], 2),
        reference=round(took["reference"], 2),
        goal=GOAL,
        detail=describe(claims, took, runs, children_peak_rss_mb()),
    )
    return [result]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=5000)
    for result in run(parser.parse_args().claims):
        print(json.dumps(result.as_dict(), ensure_ascii=False))


if __name__ == "__main__":
    main()
