"""What every benchmark shares: a throw-away PostgreSQL database, a stopwatch, peak memory and
the result row it prints."""

import os
import resource
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.settings import Settings

# An administrative connection: each run makes a database of its own and drops it at the end.
PG_ADMIN = os.environ.get("HUZHU_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HUZHU_BENCH_REDIS", "redis://127.0.0.1:6379/14")


@dataclass
class Result:
    """One goal: the project's figure, the reference, and reference / figure against the goal.

    Figures are seconds unless `unit` says otherwise; the ratio is reference / figure, so a
    ratio of 1.0 means "as fast as the reference" and the goal is a minimum ratio.
    """

    benchmark: str
    figure: float
    reference: float
    goal: float
    unit: str = "s"
    detail: str = ""
    ceiling: float | None = None  # the figure must also stay at or under this

    @property
    def ratio(self) -> float:
        return self.reference / self.figure if self.figure else float("inf")

    @property
    def met(self) -> bool:
        under = self.ceiling is None or self.figure <= self.ceiling
        return self.ratio >= self.goal and under

    def as_dict(self) -> dict:
        return asdict(self) | {"ratio": round(self.ratio, 3), "met": self.met}


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as took:` ... then took[0] holds the seconds."""
    took: list[float] = []
    start = time.perf_counter()
    try:
        yield took
    finally:
        took.append(time.perf_counter() - start)


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB.

    VmHWM, not getrusage: ru_maxrss survives exec, so a process started by a large one (pytest)
    would report its parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """The largest peak resident memory of the waited-for child processes, in MB (an upper
    bound: a child's figure includes what it shared with its parent when it was forked)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@contextmanager
def scratch_database(tag: str, admin_url: str = PG_ADMIN) -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark; yields its SQLAlchemy URL."""
    name = f"huzhu_bench_{tag}_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def own_servers() -> Iterator[tuple[str, str]]:
    """A PostgreSQL admin URL and a Redis URL to run on: HUZHU_BENCH_PG and HUZHU_BENCH_REDIS
    when they are set (the tests pass their own servers), otherwise a PostgreSQL and a Redis of
    this run's own, on free loopback ports in a temporary folder (tests/servers.py: fsync off,
    as the tests run them), stopped at the end; never the machine's."""
    from tests.servers import PostgresServer, RedisServer

    postgres = None if "HUZHU_BENCH_PG" in os.environ else PostgresServer().start()
    try:
        cache = None if "HUZHU_BENCH_REDIS" in os.environ else RedisServer().start()
        try:
            yield (
                postgres.admin_url if postgres else PG_ADMIN,
                cache.url if cache else REDIS_URL,
            )
        finally:
            if cache:
                cache.stop()
    finally:
        if postgres:
            postgres.stop()


def empty_broker(settings: Settings) -> None:
    """Delete the run's Redis keys (its prefix): queues, unacknowledged messages, beat."""
    client = redis.Redis.from_url(settings.broker)
    keys = list(client.scan_iter(match=f"{settings.broker_key_prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def proof_keys_of(folder: Path) -> dict:
    """The proofs' secret and a new log key in `folder`, as an operator gives the fleet's
    processes (Settings fields)."""
    key_file = folder / "log-key.pem"
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"proof_secret": secrets.token_hex(32), "log_key_file": key_file}


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a `celery worker` subprocess on these settings; empty hospital and
    payment URLs mean the in-process sandboxes (which confirm every diagnosis)."""
    return dict(os.environ) | {
        "HUZHU_DATA_DIR": str(settings.data_dir),
        "HUZHU_DATABASE_URL": settings.database_url,
        "HUZHU_BROKER_URL": settings.broker_url,
        "HUZHU_BROKER_KEY_PREFIX": settings.broker_key_prefix,
        "HUZHU_HOSPITAL_URL": "",
        "HUZHU_PAYMENTS_URL": "",
        "HUZHU_PROOF_SECRET": settings.proof_secret.get_secret_value(),
        "HUZHU_LOG_KEY_FILE": str(settings.log_key_file or ""),
    }


def stop(process: subprocess.Popen, grace: float) -> None:
    """A warm shutdown (SIGTERM); killed if it has not stopped within `grace` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
