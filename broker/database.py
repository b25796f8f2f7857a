"""The process's database engine, made from the settings and remade after a fork."""

from sqlalchemy import Engine

from broker import migrate
from broker.settings import get_settings
from domain.db import make_engine

_engine: Engine | None = None


def engine() -> Engine:
    global _engine
    if _engine is None:
        settings = get_settings()
        if settings.database.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        _engine = make_engine(settings.database, settings.database_pool_size)
    return _engine


def forget_engine() -> None:
    """Drop the engine without closing its connections: a forked child must not use the
    parent's pooled connections (SQLAlchemy's multiprocessing guidance), nor close them."""
    global _engine
    if _engine is not None:
        _engine.dispose(close=False)
    _engine = None


def upgrade() -> str:
    """Bring the schema at the configured database to the latest migration; returns its URL
    (without a password)."""
    migrate.upgrade(engine())
    return engine().url.render_as_string(hide_password=True)
