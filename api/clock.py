"""The API's clock: now, ahead by the settings' rehearsal offset (zero in production)."""

from datetime import UTC, datetime, timedelta

from broker.settings import get_settings


def now() -> datetime:
    return datetime.now(UTC) + timedelta(days=get_settings().api_clock_offset_days)
