"""Charging a cycle (and the whole close) against a bare INSERT ... SELECT of the same rows."""

import argparse
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from benchmarks.common import (
    REDIS_URL,
    children_peak_rss_mb,
    empty_broker,
    peak_rss_mb,
    proof_keys_of,
    scratch_database,
    stop,
    stopwatch,
    worker_env,
)
from broker.app import reconfigure
from broker.database import engine
from broker.migrate import upgrade
from broker.proofkeys import proof_keys
from broker.settings import Settings, get_settings
from broker.submit import send_step
from domain.calendar import charge_day, local_date, next_announcement_day, start_of_day
from domain.db import transaction
from domain.models import Charge, Member, SharingCycle
from domain.records import Condition, Evidence, Reply
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import proofs as proof_service
from domain.services.store import charge_partition
from workers import cycles as cycle_tasks

PLAN = "critical-illness"
CASES = ("C73", "I21.0", "C50.9")  # three patients in the cycle
TODAY = local_date(datetime.now(UTC))
ANNOUNCE_ON = next_announcement_day(TODAY)
PUBLISH_AT = start_of_day(ANNOUNCE_ON)
CLOSE_AT = start_of_day(charge_day(ANNOUNCE_ON))
JOINED = datetime(TODAY.year - 1, 1, 2, 2, 0, tzinfo=UTC)  # long past the waiting period
# The rows a charging chunk writes, for every member at once: the reference statement.
CHARGE_COLUMNS = "cycle_id, member_id, account_id, amount_fen, subsidy_fen"


@dataclass
class Measured:
    backend: str
    members: int
    reference: float  # the bare INSERT ... SELECT (best of a run before and one after ours)
    charging: float  # our chunks, each with its done row and the finalise check
    close: float  # settle + charging + finalise + audit
    audit: float  # the audit alone (with proofs: every root recomputed from the rows)
    peak_rss_mb: float
    table_mb: float
    wal_mb: float
    proofs: bool  # built in the close (False: the reference run without them)
    proof_kb: float = 0.0  # what the proofs store for the cycle: bucket and chunk roots, log
    proof_p50_ms: float = 0.0  # a member's proof, recomputed on request (the API's work)
    proof_p99_ms: float = 0.0


MEMBERS_SQL = {
    # Members joined long ago, aged 26 to 50, one in ten paid for by the member before them.
    "postgresql": """
        INSERT INTO member (member_ref, plan, birth_date, sex, province, joined_at,
                            payer_id, jury_certified)
        SELECT 'B' || lpad(n::text, 9, '0'), :plan, date '1976-01-01' + (n % 9000),
               CASE WHEN n % 2 = 0 THEN 'F' ELSE 'M' END, '广东', :joined,
               CASE WHEN n % 10 = 0 THEN n - 1 END, false
        FROM generate_series(1, :members) AS n
    """,
    "sqlite": """
        INSERT INTO member (member_ref, plan, birth_date, sex, province, joined_at,
                            payer_id, jury_certified)
        WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :members)
        SELECT 'B' || printf('%09d', n), :plan, date('1976-01-01', '+' || (n % 9000) || ' days'),
               CASE WHEN n % 2 = 0 THEN 'F' ELSE 'M' END, '广东', :joined,
               CASE WHEN n % 10 = 0 THEN n - 1 END, 0
        FROM s
    """,
}


def add_members(db: Engine, members: int) -> None:
    joined = JOINED if db.dialect.name == "postgresql" else JOINED.replace(tzinfo=None)
    with db.begin() as connection:
        connection.execute(
            text(MEMBERS_SQL[db.dialect.name]), {"plan": PLAN, "joined": joined, "members": members}
        )
        connection.execute(text("ANALYZE"))


def publish_with_cases() -> int:
    """Three claims decided by the rules, and the cycle announced with them."""
    now = PUBLISH_AT - timedelta(days=1)
    for n, icd10 in enumerate(CASES, start=1):
        raw = json.dumps(
            {
                "submission_id": f"bench-{n}",
                "member_ref": f"B{n * 7:09d}",
                "plan": PLAN,
                "icd10": icd10,
                "diagnosed_on": (TODAY - timedelta(days=10)).isoformat(),
                "hospital": "广州市第一人民医院",
                "accident": False,
            },
            ensure_ascii=False,
        )
        with transaction(engine()) as session:
            claim_id, _ = claim_service.record_submission(session, raw, now)
            claim_service.accept(session, claim_id, now)
            request = claim_service.evidence_request(session, claim_id)
            found = [Condition(request.icd10, request.diagnosed_on, "active")] if request else []
            claim_service.review_claim(session, claim_id, now, Evidence(Reply.FOUND, found))
            claim_service.schedule(session, claim_id, now)
    with transaction(engine()) as session:
        cycle = cycle_service.publish(session, PLAN, PUBLISH_AT)
        assert cycle.cases == len(CASES), f"{cycle.cases} cases announced, expected {len(CASES)}"
        return cycle.id


def make_reference_table(db: Engine, name: str) -> None:
    """An empty table of the charge table's shape: its columns, defaults, keys and indexes."""
    with db.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
        if db.dialect.name == "postgresql":
            connection.execute(text(f"CREATE TABLE {name} (LIKE charge INCLUDING ALL)"))
            return
        ddl = (
            connection.execute(
                text("SELECT sql FROM sqlite_master WHERE tbl_name = 'charge' AND sql IS NOT NULL")
            )
            .scalars()
            .all()
        )
        for statement in ddl:  # the table and its index, renamed
            statement = statement.replace("ix_charge_", f"ix_{name}_")
            statement = statement.replace("CREATE TABLE charge ", f"CREATE TABLE {name} ")
            connection.execute(text(statement.replace(" ON charge ", f" ON {name} ")))


def bare_insert(db: Engine, cycle_id: int, name: str) -> float:
    """One INSERT ... SELECT of the cycle's rows into an empty table of the same shape."""
    make_reference_table(db, name)
    with transaction(db) as session:
        cycle = session.get(SharingCycle, cycle_id)
        share, cutoff = cycle.share_fen, cycle.cutoff_at
    if db.dialect.name == "sqlite":
        cutoff = cutoff.replace(tzinfo=None)
    statement = text(
        f"INSERT INTO {name} ({CHARGE_COLUMNS}) "
        "SELECT :cycle, id, coalesce(payer_id, id), :share, 0 FROM member "
        "WHERE plan = :plan AND joined_at < :cutoff AND (exited_at IS NULL OR exited_at >= :cutoff)"
    )
    with stopwatch() as took, db.begin() as connection:
        connection.execute(
            statement, {"cycle": cycle_id, "share": share, "plan": PLAN, "cutoff": cutoff}
        )
    with db.begin() as connection:
        connection.execute(text(f"DROP TABLE {name}"))
    return took[0]


def close(db: Engine) -> tuple[int, float, float, float]:
    """The close in this process, one chunk after another: settle, every chunk (its task's
    body), finalise, audit. Returns the cycle, the charging time, the whole close's and the
    audit's."""
    with stopwatch() as whole:
        with transaction(db) as session:
            cycle = cycle_service.begin_close(session, PLAN, CLOSE_AT, get_settings().chunk_members)
        with stopwatch() as charging:
            for chunk_no in range(cycle.chunks):
                cycle_tasks.charge_chunk(cycle.id, chunk_no)  # the task body; it finalises last
        audit = audited(db, cycle.id)
    return cycle.id, charging[0], whole[0], audit


def close_on_worker(db: Engine, settings: Settings, app: str) -> tuple[int, float, float, float]:
    """The close as deployed: `close_cycle` sent to a cycle worker of two processes (compose's
    worker-cycle), which settles, fans the chunks out to itself and finalises; then the audit.
    The charging time runs from the send to the cycle's closed status."""
    with cycle_worker(settings, app), stopwatch() as whole:
        with stopwatch() as charging:
            send_step("close_cycle", PLAN, CLOSE_AT.isoformat())
            cycle_id = wait_closed(db)
        audit = audited(db, cycle_id)
    return cycle_id, charging[0], whole[0], audit


def audited(db: Engine, cycle_id: int) -> float:
    with stopwatch() as took, transaction(db) as session:
        closed = session.get(SharingCycle, cycle_id)
        report = audit_service.audit(session, keys=proof_keys())
    assert closed.status == "closed", f"cycle {cycle_id} is {closed.status}"
    assert report.balanced, report.problems
    return took[0]


def proof_latencies(db: Engine, cycle_id: int, samples: int = 200) -> tuple[float, float]:
    """p50 and p99 in ms of a member's proof as the API makes it (recomputed from their bucket's
    rows), for charged members drawn at random over the cycle, each in its own transaction."""
    secret = proof_keys().secret
    with transaction(db) as session:
        cycle = session.get(SharingCycle, cycle_id)
        low, high = cycle.first_member_id, cycle.last_member_id
    timings = []
    for member_id in random.Random(cycle_id).sample(range(low, high + 1), samples):
        with stopwatch() as took, transaction(db) as session:
            cycle, member = session.get(SharingCycle, cycle_id), session.get(Member, member_id)
            if member is None or session.get(Charge, (cycle_id, member_id)) is None:
                continue  # not charged in this cycle: the API answers 404 at once
            proof_service.member_proof(session, cycle, member, secret)
        timings.append(took[0] * 1000)
    timings.sort()
    return timings[len(timings) // 2], timings[min(len(timings) - 1, int(len(timings) * 0.99))]


def proof_kb(db: Engine) -> float:
    """What the proofs keep (the benchmark's one cycle): the bucket roots' table with its key,
    and the log; the chunks' roots are 32 bytes on rows the close keeps anyway."""
    tables = ("proofbucket", "logentry", "loghead")
    with db.connect() as connection:
        if db.dialect.name == "postgresql":
            size = sum(
                connection.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar()
                for t in tables
            )
        else:
            size = connection.execute(
                text(
                    "SELECT sum(pgsize) FROM dbstat WHERE name IN ('proofbucket', "
                    "'logentry', 'loghead') OR name LIKE 'sqlite_autoindex_proofbucket%'"
                )
            ).scalar()
    return float(size or 0) / 1024


def wait_closed(db: Engine, timeout: float = 1800) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connect() as connection:
            closed = connection.execute(
                text("SELECT id FROM sharingcycle WHERE status = 'closed'")
            ).scalar()
        if closed is not None:
            return closed
        time.sleep(0.05)
    raise TimeoutError(f"the cycle did not close within {timeout} s")


@contextmanager
def cycle_worker(settings: Settings, app: str) -> Iterator[None]:
    """`celery -A APP worker -Q cycle -c 2` (prefetch 1, events on), ready before the clock
    starts; the payments tasks the close sends wait in Redis and are deleted with the run's
    keys."""
    log = settings.data_dir / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", "cycle"]
    command += ["-c", "2", "--prefetch-multiplier", "1", "-E", "-l", "INFO"]
    with log.open("w") as output:
        worker = subprocess.Popen(
            command, env=worker_env(settings), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the cycle worker did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield
    finally:
        stop(worker, 60)


def wal_position(db: Engine) -> int:
    if db.dialect.name != "postgresql":
        return 0
    with db.connect() as connection:
        return int(connection.execute(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar())


def table_mb(db: Engine, cycle_id: int) -> float:
    with db.connect() as connection:
        if db.dialect.name == "postgresql":
            size = connection.execute(
                text(f"SELECT pg_total_relation_size('{charge_partition(cycle_id)}')")
            ).scalar()
        else:
            size = connection.execute(
                text(  # the charge table and its indexes, not the chunk table
                    "SELECT sum(pgsize) FROM dbstat "
                    "WHERE name LIKE '%charge%' AND name NOT LIKE '%chunk%'"
                )
            ).scalar()
    return float(size or 0) / 2**20


def measure(backend: str, members: int, on_worker: bool, proofs: bool = True) -> Measured:
    """Everything for one database and one membership, in this process (for its peak memory);
    without `proofs`, the close as it ran before them (the reference of their cost)."""
    if not proofs:
        importlib.import_module("benchmarks.without_proofs")  # leaves them out, here too
    with tempfile.TemporaryDirectory(prefix="huzhu-bench-") as folder:
        if backend == "sqlite":
            return _measure(Settings(data_dir=Path(folder)), members, False, proofs)
        prefix = f"huzhu-bench-{os.getpid()}:"
        with scratch_database(f"charging_{members}") as url:
            settings = Settings(
                data_dir=Path(folder),
                database_url=url,
                broker_url=REDIS_URL if on_worker else "",
                broker_key_prefix=prefix,
                **proof_keys_of(Path(folder)),
            )
            try:
                return _measure(settings, members, on_worker, proofs)
            finally:
                if on_worker:
                    empty_broker(settings)


def _measure(settings: Settings, members: int, on_worker: bool, proofs: bool) -> Measured:
    reconfigure(settings)
    db = engine()
    upgrade(db)
    add_members(db, members)
    cycle_id = publish_with_cases()
    before = bare_insert(db, cycle_id, "charge_reference_before")
    wal_start = wal_position(db)
    app = "workers" if proofs else "benchmarks.without_proofs"
    closed_id, charging, whole, audit = (
        close_on_worker(db, settings, app) if on_worker else close(db)
    )
    wal = (wal_position(db) - wal_start) / 2**20
    after = bare_insert(db, cycle_id, "charge_reference_after")
    measured = Measured(
        backend=db.dialect.name,
        members=members,
        reference=min(before, after),
        charging=charging,
        close=whole,
        # This process's, and the worker's (its children count once they are waited for).
        peak_rss_mb=max(peak_rss_mb(), children_peak_rss_mb()),
        table_mb=table_mb(db, closed_id),
        wal_mb=wal,
        proofs=proofs,
        audit=audit,
    )
    if proofs:
        measured.proof_kb = proof_kb(db)
        measured.proof_p50_ms, measured.proof_p99_ms = proof_latencies(db, closed_id)
    db.dispose()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="charge the chunks one after another in this process instead of on a cycle worker "
        "(always so on SQLite, whose one writer gains nothing from two)",
    )
    parser.add_argument(
        "--without-proofs",
        action="store_true",
        help="the reference run: the close with its proof steps left out",
    )
    args = parser.parse_args()
    on_worker = args.backend == "postgresql" and not args.in_process
    measured = measure(args.backend, args.members, on_worker, not args.without_proofs)
    print(json.dumps(measured.__dict__ | {"on_worker": on_worker}))


if __name__ == "__main__":
    main()
