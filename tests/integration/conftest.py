"""Real parts for integration tests: PostgreSQL and Redis on loopback, SQLite with the file
queue, and `celery -A workers worker` subprocesses. A missing server fails the test loudly."""

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
PG_DATABASE = "huzhu_test"
REDIS_URL = os.environ.get("HUZHU_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
            ).fetchone()
            if not exists:
                admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN}: {error}. Start it (see README).")
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{PG_DATABASE}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {error}. Start it (see README).")
    return REDIS_URL


def make_stack(name: str, tmp: Path, postgres_url: str, redis_url: str) -> Stack:
    if name == "postgres":
        settings = Settings(
            data_dir=tmp, database_url=postgres_url, broker_url=redis_url, chunk_size=50
        )
        redis.Redis.from_url(redis_url).flushdb()
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


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)
