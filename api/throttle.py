"""Members' writes are rate-limited per member (the `limits` library: a moving window, kept in
Redis on the fleet so every API worker counts together, in memory on the embedded default)."""

import time
from functools import cache
from typing import Annotated

from fastapi import Depends
from limits import parse
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from api.access import caller
from api.auth import Caller
from api.problems import Problem
from broker.settings import Settings, get_settings


@cache
def _limiter(broker: str, prefix: str) -> MovingWindowRateLimiter:
    storage: Storage = (
        RedisStorage(broker, key_prefix=f"{prefix}huzhu-limits")
        if broker.startswith("redis")
        else MemoryStorage()
    )
    return MovingWindowRateLimiter(storage)


def limiter(settings: Settings) -> MovingWindowRateLimiter:
    """Made at start-up by create_app: `limits` imports its Redis client lazily, and two
    threads doing so at once on a worker's first requests failed with a bogus version error."""
    return _limiter(settings.broker, settings.broker_key_prefix)


def write_limit(who: Annotated[Caller, Depends(caller)]) -> None:
    """A dependency of every member's write: 429 with Retry-After once the member is over."""
    settings = get_settings()
    rate = parse(settings.api_write_limit)
    found = limiter(settings)
    if found.hit(rate, "write", who.member_ref):
        return
    reset_at, _ = found.get_window_stats(rate, "write", who.member_ref)
    wait = max(1, int(reset_at - time.time()) + 1)
    raise Problem(
        429,
        "too-many-requests",
        "Too many requests",
        f"at most {settings.api_write_limit} writes per member; try again in {wait} s",
        {"Retry-After": str(wait)},
    )


Throttled = [Depends(write_limit)]
