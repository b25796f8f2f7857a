"""Small storage helpers shared by the services: locked loads and insert-if-absent."""

import zlib
from functools import cache
from typing import TypeVar

from sqlalchemy import Insert, Select, Table, bindparam, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, select

Row = TypeVar("Row", bound=SQLModel)
Query = TypeVar("Query", bound=Select)


def insert_ignoring_duplicates(session: Session, model: type[SQLModel]) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING in the session's dialect."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing()


@cache
def prepared_insert(dialect: str, table: Table, columns: tuple[str, ...], new_only: bool) -> Insert:
    """INSERT of `columns` as bind parameters (with `new_only`: ON CONFLICT DO NOTHING,
    RETURNING the primary key of a row inserted), built once per dialect: on a path taken for
    every claim, making the statement with its values inline (and its cache key) cost more
    than running it."""
    values = {column: bindparam(column) for column in columns}
    if not new_only:
        return insert(table).values(values)
    dialect_module = postgresql if dialect == "postgresql" else sqlite
    statement = dialect_module.insert(table).values(values).on_conflict_do_nothing()
    return statement.returning(*table.primary_key.columns)


def load_for_update(session: Session, model: type[Row], key: object) -> Row | None:
    """The row, locked for this transaction (row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE
    already holds the database write lock)."""
    primary_key = model.__table__.primary_key.columns.values()[0]  # type: ignore[attr-defined]
    return session.exec(for_update(select(model).where(primary_key == key))).first()


def for_update(query: Query) -> Query:
    """`query` locking its rows, and re-reading them once the lock is held: a row already in
    the session would otherwise keep what was read before the wait (a second close would still
    see the cycle open, a second exit the member still in)."""
    return query.with_for_update().execution_options(populate_existing=True)


def lock_plan(session: Session, plan: str, shared: bool) -> None:
    """Serialise membership changes against publishing and closing a plan's cycle.

    Imports and exits take the plan's lock shared (they run side by side); publish and close
    take it alone, so the set of members at a cut-off cannot change while it is being frozen.
    On SQLite, BEGIN IMMEDIATE already lets one writer in at a time.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    key = zlib.crc32(f"huzhu-plan:{plan}".encode())
    session.execute(text(f"SELECT {function}(:key)"), {"key": key})


def lock_member_ref(session: Session, member_ref: str) -> None:
    """Serialise enrolments of one person, in every plan: their (plan, member_ref) rows are
    unique per plan only, and two payers enrolling them in two plans at once would each see
    them free. SQLite: one writer at a time."""
    _exclusive(session, f"huzhu-member:{member_ref}")


def lock_cash(session: Session, plan: str) -> None:
    """Serialise the decisions that spend a plan's cash (claiming a payout, funding it), so two
    payouts sent at once cannot both count on the same fen. SQLite: one writer at a time."""
    _exclusive(session, f"huzhu-cash:{plan}")


def lock_log(session: Session) -> None:
    """One appender to the log of roots at a time: each entry's index is the count before it."""
    _exclusive(session, "huzhu-log")


def _exclusive(session: Session, name: str) -> None:
    """A transaction-scoped advisory lock on PostgreSQL; SQLite lets one writer in anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(name.encode())})


def charge_partition(cycle_id: int) -> str:
    return f"charge_c{int(cycle_id)}"


def add_charge_partition(session: Session, cycle_id: int) -> None:
    """Give a new cycle its own partition of the charge table (PostgreSQL; SQLite has one table).

    Made apart and then attached: ATTACH takes a lighter lock on the parent than CREATE TABLE
    ... PARTITION OF, so reading other cycles' charges meanwhile is not blocked.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    name = charge_partition(cycle_id)
    session.execute(text(f"CREATE TABLE {name} (LIKE charge INCLUDING DEFAULTS)"))
    session.execute(
        text(f"ALTER TABLE charge ATTACH PARTITION {name} FOR VALUES IN ({int(cycle_id)})")
    )
