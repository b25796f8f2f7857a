"""What every task shares: the clock, one transaction per step, and retry on transient errors."""

import logging
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from broker.database import engine
from broker.http import Unavailable
from domain.db import transaction

log = logging.getLogger("huzhu.workers")

# Lost connections, lock time-outs, serialisation failures and an unreachable hospital or
# payment provider pass; the step is retried with
# backoff, and every countdown stays far below the broker's visibility timeout (a long ETA
# would run twice). Data and integrity errors are not transient: retrying them changes nothing.
TRANSIENT = (OperationalError, InterfaceError, Unavailable)


def task_options(name: str) -> dict:
    return {
        "name": f"huzhu.{name}",
        "autoretry_for": TRANSIENT,
        "retry_backoff": 2,
        "retry_backoff_max": 60,
        "retry_jitter": True,
        "max_retries": 8,
    }


def now() -> datetime:
    return datetime.now(UTC)


def moment(at: str | None) -> datetime:
    """The clock of a run: beat passes none (now); the CLI passes an explicit ISO moment."""
    return datetime.fromisoformat(at) if at else now()


def unit_of_work() -> AbstractContextManager[Session]:
    return transaction(engine())
