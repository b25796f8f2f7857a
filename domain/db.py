"""Engines and transactions for SQLite (embedded default) and PostgreSQL (the fleet)."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel

from domain import models  # noqa: F401  (registers the tables on SQLModel.metadata)


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for the URL; SQLite gets WAL, a busy timeout and write-locking transactions.

    Bound parameters are hidden from error messages: they hold names, birth dates and
    diagnoses, and an error's text reaches worker logs and Flower.
    """
    if url.startswith("sqlite"):
        # NullPool: each session gets its own connection, so threads and forks never share one.
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"timeout": 60}, hide_parameters=True
        )
        _make_sqlite_transactions_immediate(engine)
        return engine
    # No overflow: a connection opened past the pool is closed again on return, and a busy
    # API process would open one per request; a thread waits for a pooled one instead.
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=0, hide_parameters=True
    )


def _make_sqlite_transactions_immediate(engine: Engine) -> None:
    # SQLite has no row locks; BEGIN IMMEDIATE takes the write lock up front, so a read-then-write
    # transaction (load a claim, check its state, update it) cannot interleave with another.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def commit_without_waiting(session: Session) -> None:
    """Let this transaction's commit return before its WAL reaches the disk (PostgreSQL).

    Only for bookkeeping that may be lost in a server crash without harm (a delivery counter);
    never for money or a claim's state. Saves a disk flush per step.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def drop_schema(engine: Engine) -> None:
    """Every table, with the charge partitions of archived cycles (no longer under `charge`)."""
    SQLModel.metadata.drop_all(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            archived = connection.execute(
                text("SELECT tablename FROM pg_tables WHERE tablename ~ '^charge_c[0-9]+$'")
            ).scalars()
            for table in list(archived):
                connection.execute(text(f"DROP TABLE {table}"))


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
