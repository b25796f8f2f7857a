"""The chain benchmark's reference: no-op tasks on the project's Celery app (`--include` them)."""

from functools import cache

import redis

from broker.app import app
from broker.settings import get_settings

# The reference run is done when this counter, under the run's key prefix, reaches its count.
DONE_KEY = "bench:noop-done"


@cache
def _redis() -> redis.Redis:
    # One client per worker child, made on first use (after the fork), never shared.
    return redis.Redis.from_url(get_settings().broker)


@app.task(name="bench.noop")
def noop(n: int) -> int:
    return n


@app.task(name="bench.noop_last")
def noop_last(n: int) -> int:
    """The chain's last link: one INCR, the cheapest honest record that the chain ran through."""
    _redis().incr(f"{get_settings().broker_key_prefix}{DONE_KEY}")
    return n
