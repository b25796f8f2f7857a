"""Real parts for integration tests: PostgreSQL and Redis on loopback, SQLite with the file
queue, and `celery -A workers worker` subprocesses. A missing server fails the test loudly.

The session starts a PostgreSQL and a Redis of its own (tests/servers.py) unless
HUZHU_TEST_PG / HUZHU_TEST_REDIS point it at outside servers. Each run has a database and a
Redis key prefix of its own (named by its process id), so two runs sharing an outside server
(a developer's and CI's) never take each other's rows or messages.
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
from tests.integration.support import Stack, log_key_pem, run_worker
from tests.servers import PostgresServer, RedisServer

OUTSIDE_PG = os.environ.get("HUZHU_TEST_PG")
OUTSIDE_REDIS = os.environ.get("HUZHU_TEST_REDIS")
PG_PREFIX = "huzhu_test_"
PG_DATABASE = f"{PG_PREFIX}{os.getpid()}"
REDIS_PREFIX = f"huzhu-test-{os.getpid()}:"


def own_server(outside: str | None, kind: type[PostgresServer | RedisServer], what: str):
    """Start a server of `kind` for the session and stop it at the end; None when an outside
    one is named instead."""
    if outside:
        yield None
        return
    server = kind()
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(f"could not start a {what} server for the tests: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[PostgresServer | None]:
    """The session's own PostgreSQL server; None when HUZHU_TEST_PG names an outside one."""
    yield from own_server(OUTSIDE_PG, PostgresServer, "PostgreSQL")


@pytest.fixture(scope="session")
def own_redis() -> Iterator[RedisServer | None]:
    """The session's own Redis server; None when HUZHU_TEST_REDIS names an outside one."""
    yield from own_server(OUTSIDE_REDIS, RedisServer, "Redis")


@pytest.fixture(scope="session")
def postgres_admin(own_postgres) -> str:
    """A URL of the server's maintenance database, for creating the run's own database."""
    return own_postgres.admin_url if own_postgres else str(OUTSIDE_PG)


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
def postgres_url(postgres_admin) -> Iterator[str]:
    try:
        admin = psycopg.connect(postgres_admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable at {postgres_admin}: {error}.")
    with admin:
        drop_stale_databases(admin)
        admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    base = postgres_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{PG_DATABASE}"
    # A new connection: a fault test may have restarted the server since.
    with psycopg.connect(postgres_admin, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


def empty_broker(url: str, prefix: str) -> None:
    """Delete this run's Redis keys (its queues, unacknowledged messages and beat's schedule)."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def redis_url(own_redis) -> Iterator[str]:
    url = own_redis.url if own_redis else str(OUTSIDE_REDIS)
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is not reachable at {url}: {error}.")
    yield url
    empty_broker(url, REDIS_PREFIX)


def make_stack(name: str, tmp: Path, postgres_url: str, redis_url: str) -> Stack:
    if name == "postgres":
        settings = Settings(
            data_dir=tmp,
            database_url=postgres_url,
            broker_url=redis_url,
            broker_key_prefix=REDIS_PREFIX,
            chunk_size=50,
            # As an operator gives the fleet: one secret and one log key for every process.
            proof_secret="fleet-proof-secret-" + "x" * 32,
            log_key_file=log_key_pem(tmp / "log-key.pem"),
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
