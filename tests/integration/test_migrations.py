"""The Alembic migrations build exactly the schema the SQLModel models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from broker.database import engine
from broker.migrate import upgrade
from domain.db import drop_schema


def test_the_migrations_and_the_models_agree(stack):
    drop_schema(engine())
    with engine().begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine())
    upgrade(engine())  # a second run is a no-op
    with engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
    assert "alembic_version" in inspect(engine()).get_table_names()
