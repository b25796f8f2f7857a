"""Alembic's entry: migrations run against the configured database (HUZHU_DATABASE_URL)."""

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


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite alters tables by copying them; batch mode does that for us.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
