"""Schema migrations with Alembic: `huzhu db upgrade` applies them, a test checks that they
and the SQLModel models agree."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection) -> Config:
    settings = Config()
    settings.set_main_option("script_location", str(MIGRATIONS))
    settings.attributes["connection"] = connection  # env.py migrates on this connection
    return settings


def upgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        command.upgrade(_config(connection), "head")


def revision(engine: Engine, message: str) -> None:
    """Write a new migration from the difference between the models and the database
    (for developers: `python -c "from broker.database import engine; from broker.migrate import
    revision; revision(engine(), 'what changed')"`)."""
    with engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)


def behind(engine: Engine) -> bool:
    """Whether the database's schema is older than the code's newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
        heads = ScriptDirectory.from_config(_config(connection)).get_heads()
    return set(current) != set(heads)
