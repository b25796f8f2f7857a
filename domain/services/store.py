"""Small storage helpers shared by the services: locked loads and insert-if-absent."""

from typing import TypeVar

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, select

Row = TypeVar("Row", bound=SQLModel)


def insert_ignoring_duplicates(session: Session, model: type[SQLModel]) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING in the session's dialect."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing()


def load_for_update(session: Session, model: type[Row], key: object) -> Row | None:
    """The row, locked for this transaction (row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE
    already holds the database write lock)."""
    primary_key = model.__table__.primary_key.columns.values()[0]  # type: ignore[attr-defined]
    return session.exec(select(model).where(primary_key == key).with_for_update()).first()
