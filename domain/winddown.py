"""Winding a plan down, pure: from the announcement nobody shares and the platform pays; after
the end, a tail in which claims of illnesses diagnosed before the end may still be filed.

The stages, in order (each is stored with an event when it is reached):
- active: the plan as ever (a wind-down may be scheduled: it starts at its announcement);
- winding_down, from the announcement T1: no one joins; no member is charged for a cycle whose
  charge day is on or after T1's day, the platform pays those cycles in full;
- ended, from the end T2: every membership ends; the cycles announced before T2 close;
- tail, once they have closed: claims of a first diagnosis before T2, by a member of the plan at
  diagnosis, filed within the plan's `tail_days` of the diagnosis (that day included), are still
  reviewed and announced, and the platform pays them;
- settled, after the tail's last day, once every claim is decided and every payout made.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from domain.calendar import local_date


class Stage(StrEnum):
    ACTIVE = "active"
    WINDING_DOWN = "winding_down"
    ENDED = "ended"
    TAIL = "tail"
    SETTLED = "settled"


ORDER = list(Stage)
# The stages of a plan that has ended (from T2); one refunding every share makes its refunds in
# them, and goes on making them for any share collected late.
HAS_ENDED = (Stage.ENDED, Stage.TAIL, Stage.SETTLED)
# 相互宝 gave a month's notice; a wind-down longer than this is a mistake in the dates.
MAX_NOTICE = timedelta(days=366)


@dataclass(frozen=True)
class WindDown:
    plan: str
    announce_at: datetime  # T1
    end_at: datetime  # T2
    tail_days: int  # the plan's, from plans.toml
    refund_all_shares: bool = False  # every share ever paid is refunded from the end

    @property
    def sharing_stops_on(self) -> date:
        """The first charge day the platform pays instead of the members: T1's own day (the
        debit due that day is the platform's, as 相互宝's was on 2021-12-28)."""
        return local_date(self.announce_at)

    @property
    def last_covered_day(self) -> date:
        """The last day a first diagnosis is covered: the last whole day before T2, the day
        before T2's own (an end at 24:00 is 00:00 of the next day). A membership ends at T2, and
        a diagnosis on the day a membership ends is not covered (domain.claims), so an end at
        18:00 (水滴互助's) covers the day before it, not its own."""
        return local_date(self.end_at) - timedelta(days=1)

    @property
    def last_tail_day(self) -> date:
        """The last day any tail claim can be filed."""
        return self.last_covered_day + timedelta(days=self.tail_days)

    def platform_pays(self, charge_on: date) -> bool:
        return charge_on >= self.sharing_stops_on

    def accepts_members(self, at: datetime) -> bool:
        return at < self.announce_at

    def tail_refusal(self, diagnosed_on: date, received_at: datetime) -> str | None:
        """Why a claim received after the end is outside the tail, or None when it may go on to
        review (the plan's other rules, membership at diagnosis among them, still apply)."""
        if received_at < self.end_at:
            return None
        if diagnosed_on > self.last_covered_day:
            return f"diagnosed on {diagnosed_on}, after the plan ended on {self.last_covered_day}"
        last = diagnosed_on + timedelta(days=self.tail_days)
        if local_date(received_at) > last:
            return (
                f"filed on {local_date(received_at)}, after {last}: the last day of the "
                f"{self.tail_days} days from the diagnosis on {diagnosed_on}"
            )
        return None


def schedule_refusal(announce_at: datetime, end_at: datetime, now: datetime) -> str | None:
    """Why a wind-down cannot be scheduled with these moments, or None."""
    if announce_at.tzinfo is None or end_at.tzinfo is None:
        return "the announcement and the end need a timezone offset"
    if end_at <= announce_at:
        return "the end must come after the announcement"
    if end_at - announce_at > MAX_NOTICE:
        return f"the end is more than {MAX_NOTICE.days} days after the announcement"
    if announce_at < now - timedelta(days=1):
        return "the announcement is more than a day in the past; members must hear it first"
    if end_at <= now:
        return "the end has passed; a plan cannot end before its members are told"
    if announce_at > now + MAX_NOTICE:
        return f"the announcement is more than {MAX_NOTICE.days} days ahead"
    return None


def stage_due(
    wind_down: WindDown, now: datetime, last_cycles_closed: bool, all_settled: bool
) -> Stage:
    """The stage the plan has reached by `now`, given whether the cycles announced before the
    end have closed and whether every claim is decided and every payout made."""
    if now < wind_down.announce_at:
        return Stage.ACTIVE
    if now < wind_down.end_at:
        return Stage.WINDING_DOWN
    if not last_cycles_closed:
        return Stage.ENDED
    if local_date(now) <= wind_down.last_tail_day or not all_settled:
        return Stage.TAIL
    return Stage.SETTLED
