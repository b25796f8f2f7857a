"""Objections (我有异议) and the dispute jury (赔审团), pure: windows, eligibility, the tally."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from domain.calendar import age_on, local_date, start_of_day
from domain.claims import Reason, State
from domain.plans import Plan

JUROR_MIN_AGE = 18
JUROR_MIN_DAYS = 30
# Rejections a jury may overturn: judgements of the illness or the evidence, not facts such as
# an unknown member, a duplicate or dates outside the membership.
# Not "not covered": the plan's list of illnesses is the members' contract, not a judgement.
JURY_REASONS = {
    Reason.CRITERIA_NOT_MET,
    Reason.NOT_CONFIRMED_BY_RECORDS,
    Reason.UNDISCLOSED_CONDITION,
    Reason.OBJECTION_UPHELD,
}


def objection_window(announce_on: date, plan: Plan) -> tuple[datetime, datetime]:
    """From 00:00 on the announcement day, for the plan's objection days (by the charge day)."""
    return start_of_day(announce_on), start_of_day(
        announce_on + timedelta(days=plan.objection_days)
    )


@dataclass(frozen=True)
class Objector:
    plan: str
    active: bool
    is_claimant: bool
    # A jury of members approved the case: its verdict is final, not open to objection.
    jury_approved: bool = False


def evidence_refusal(evidence: str | None) -> str | None:
    """Evidence is a link a reviewer opens: http or https to a host, nothing a browser would
    run (javascript:, data:)."""
    if not evidence:
        return None
    link = urlsplit(evidence)
    if link.scheme not in ("http", "https") or not link.netloc:
        return "the evidence must be an http(s) link, e.g. https://example.com/photo.jpg"
    return None


def objection_refusal(
    claim_state: str,
    claim_plan: str,
    window: tuple[datetime, datetime],
    at: datetime,
    who: Objector,
) -> str | None:
    """Why this objection cannot be filed, or None."""
    if claim_state not in (State.ANNOUNCED, State.OBJECTED):
        return f"the case is {claim_state}, not on a published announcement"
    if who.plan != claim_plan or not who.active:
        return "only members of the same plan may object"
    if who.is_claimant:
        return "the applicant cannot object to their own case"
    if who.jury_approved:
        return "a jury of members approved this case; its verdict is final"
    if not window[0] <= at < window[1]:
        return f"objections are open from {window[0].isoformat()} to {window[1].isoformat()}"
    return None


def jury_request_refusal(
    claim_state: str,
    reason: str | None,
    decided_at: datetime | None,
    at: datetime,
    plan: Plan,
    asked_jury: int | None = None,
) -> str | None:
    """Why a jury cannot be asked for this claim, or None. `asked_jury`: the jury asked for it
    already, if any (one per claim)."""
    if asked_jury is not None:
        return f"a jury was already asked for this claim (case {asked_jury})"
    if claim_state != State.REJECTED:
        return f"the claim is {claim_state}; a jury reviews rejected claims only"
    if reason not in JURY_REASONS:
        return f"a rejection for {reason} is a matter of fact, not for a jury"
    assert decided_at is not None
    if at > decided_at + timedelta(days=plan.jury_request_days):
        return f"a jury must be asked within {plan.jury_request_days} days of the rejection"
    return None


@dataclass(frozen=True)
class Juror:
    member_ref: str
    birth_date: date
    joined_at: datetime
    active: bool
    certified: bool
    unpaid_charges: int


def juror_refusal(juror: Juror, applicants_family: frozenset[str], at: datetime) -> str | None:
    """Why a member may not vote on this case, or None (MISSION: paying, 18 or older,
    certified, a member for 30 days, not the applicant nor their family). The family is
    the member_refs linked to the applicant by who pays for whom, in any plan."""
    if juror.member_ref in applicants_family:
        return "the applicant and their family cannot vote"
    if not juror.active or juror.unpaid_charges:
        return "jurors must be paying members"
    if age_on(juror.birth_date, local_date(at)) < JUROR_MIN_AGE:
        return f"jurors must be {JUROR_MIN_AGE} or older"
    if not juror.certified:
        return "jurors must have passed the juror certification"
    if at - juror.joined_at < timedelta(days=JUROR_MIN_DAYS):
        return f"jurors must have been members for {JUROR_MIN_DAYS} days"
    return None


@dataclass(frozen=True)
class Tally:
    support: int
    oppose: int
    min_votes: int

    @property
    def votes(self) -> int:
        return self.support + self.oppose

    @property
    def valid(self) -> bool:
        return self.votes >= self.min_votes

    @property
    def approved(self) -> bool:
        # More than half in favour; exactly half is not enough.
        return self.valid and self.support * 2 > self.votes
