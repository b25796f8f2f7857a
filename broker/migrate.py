"""Schema migrations with Alembic: `huzhu db upgrade` applies them, a test checks that they
and the SQLModel models agree."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def config(engine: Engine | None = None) -> Config:
    settings = Config()
    settings.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        settings.attributes["engine"] = engine
    return settings


def upgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        settings = config()
        settings.attributes["connection"] = connection
        command.upgrade(settings, "head")


def revision(engine: Engine, message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    with engine.begin() as connection:
        settings = config()
        settings.attributes["connection"] = connection
        command.revision(settings, message=message, autogenerate=True)
