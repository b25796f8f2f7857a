"""Alembic's entry: migrations run against the configured database (HUZHU_DATABASE_URL)."""

import re

from alembic import context
from sqlmodel import SQLModel

from broker.database import engine
from domain import models  # noqa: F401  (the tables on SQLModel.metadata)


def run() -> None:
    connectable = context.config.attributes.get("connection")
    if connectable is None:
        with engine().connect() as connection:
            _migrate(connection)
    else:
        _migrate(connectable)


def _ours(item, name, type_, _reflected, _compare_to) -> bool:
    """Each cycle's charge partition (charge_c<id>), attached or archived, and its indexes are
    made at run time, not by the models."""
    table = name if type_ == "table" else getattr(getattr(item, "table", None), "name", "")
    return not re.fullmatch(r"charge_c\d+", table or "")


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite alters tables by copying them; batch mode does that for us.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_ours,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
