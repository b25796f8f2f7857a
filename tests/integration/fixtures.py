"""Real parts for integration tests: PostgreSQL and Redis on loopback, SQLite with the file
queue, and `celery -A workers worker` subprocesses. A missing server fails the test loudly.

Each run has a database and a Redis key prefix of its own (named by its process id), so two runs
on one machine (a developer's and CI's) never take each other's rows or messages.
"""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import text

from broker.app import reconfigure
from broker.database import engine
from broker.migrate import upgrade
from broker.settings import Settings
from domain.db import drop_schema
from tests.integration.support import Stack, run_worker

PG_ADMIN = os.environ.get("HUZHU_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_PREFIX = "huzhu_test_"
PG_DATABASE = f"{PG_PREFIX}{os.getpid()}"
REDIS_URL = os.environ.get("HUZHU_TEST_REDIS", "redis://127.0.0.1:6379/15")
REDIS_PREFIX = f"huzhu-test-{os.getpid()}:"


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_stale_databases(admin: psycopg.Connection) -> None:
    """Databases of earlier runs whose process is gone (a run killed before its teardown)."""
    names = admin.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{PG_PREFIX}%",)
    ).fetchall()
    for (name,) in names:
        suffix = name.removeprefix(PG_PREFIX)
        if suffix.isdigit() and not running(int(suffix)):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN}: {error}. Start it (see README).")
    with admin:
        drop_stale_databases(admin)
        admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{PG_DATABASE}"
    # A new connection: a fault test may have restarted the server since.
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


def empty_broker(url: str, prefix: str) -> None:
    """Delete this run's Redis keys (its queues, unacknowledged messages and beat's schedule)."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {error}. Start it (see README).")
    yield REDIS_URL
    empty_broker(REDIS_URL, REDIS_PREFIX)


def make_stack(name: str, tmp: Path, postgres_url: str, redis_url: str) -> Stack:
    if name == "postgres":
        settings = Settings(
            data_dir=tmp,
            database_url=postgres_url,
            broker_url=redis_url,
            broker_key_prefix=REDIS_PREFIX,
            chunk_size=50,
        )
        empty_broker(redis_url, REDIS_PREFIX)
    else:
        settings = Settings(data_dir=tmp, chunk_size=50)
    reconfigure(settings)
    drop_schema(engine())
    with engine().begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine())  # the schema as an operator gets it: by the migrations
    return Stack(name, settings)


@pytest.fixture(params=["postgres", "sqlite"])
def stack(request, tmp_path, postgres_url, redis_url) -> Stack:
    """A fresh database and queue for each test, on each of the two ways Huzhu runs."""
    return make_stack(request.param, tmp_path, postgres_url, redis_url)


@pytest.fixture
def postgres_stack(tmp_path, postgres_url, redis_url) -> Stack:
    return make_stack("postgres", tmp_path, postgres_url, redis_url)


@pytest.fixture
def sqlite_stack(tmp_path, postgres_url, redis_url) -> Stack:
    return make_stack("sqlite", tmp_path, postgres_url, redis_url)


@pytest.fixture
def worker(stack) -> Iterator[subprocess.Popen]:
    """`celery -A workers worker` on every queue, as an operator starts it."""
    yield from run_worker(stack)
