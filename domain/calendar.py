"""The sharing calendar (Asia/Shanghai): announcements on the 7th and 21st, charges a week later.

The domain never reads the clock; every function takes the moment it reasons about.
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
ANNOUNCEMENT_DAYS = (7, 21)
# Charging follows each announcement by a week: 7th -> 14th, 21st -> 28th.
CHARGE_DELAY = timedelta(days=7)


def local_date(moment: datetime) -> date:
    """The calendar date in Shanghai at an aware moment."""
    return require_aware(moment).astimezone(SHANGHAI).date()


def start_of_day(day: date) -> datetime:
    """00:00 Shanghai time on a day, as an aware UTC datetime."""
    return datetime.combine(day, time.min, tzinfo=SHANGHAI).astimezone(UTC)


def require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no timezone; give an offset such as +08:00")
    return moment


def is_announcement_day(day: date) -> bool:
    return day.day in ANNOUNCEMENT_DAYS


def announcement_day_on_or_before(day: date) -> date:
    """The latest announcement day not after `day`."""
    for days_back in range(0, 32):
        candidate = day - timedelta(days=days_back)
        if is_announcement_day(candidate):
            return candidate
    raise AssertionError("every month has an announcement day")  # pragma: no cover


def next_announcement_day(after: date) -> date:
    """The first announcement day strictly after `after`."""
    for days_ahead in range(1, 32):
        candidate = after + timedelta(days=days_ahead)
        if is_announcement_day(candidate):
            return candidate
    raise AssertionError("every month has an announcement day")  # pragma: no cover


def charge_day(announcement_day: date) -> date:
    if not is_announcement_day(announcement_day):
        raise ValueError(f"{announcement_day} is not an announcement day (the 7th or 21st)")
    return announcement_day + CHARGE_DELAY


def age_on(birth_date: date, day: date) -> int:
    """Completed years of age on `day` (a 29 February birthday counts from 1 March)."""
    years = day.year - birth_date.year
    if (day.month, day.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def add_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February falls to 1 March."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)
