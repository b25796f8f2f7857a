"""Hospital records as evidence, pure: does the record confirm the claim, and was a related
condition there before the member joined (a health-declaration breach)?"""

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from domain.illnesses import Catalog, normalise_icd10

# Clinical statuses under which a recorded condition does not count as evidence.
NOT_EVIDENCE = {"entered-in-error", "refuted"}
# FHIR verificationStatus: only a confirmed diagnosis is evidence; a provisional, differential
# or unconfirmed one needs a person.
CONFIRMED = "confirmed"
TENTATIVE = {"provisional", "differential", "unconfirmed"}


@dataclass(frozen=True)
class Condition:
    icd10: str
    onset: date
    clinical_status: str
    verification: str = CONFIRMED

    @property
    def counts(self) -> bool:
        return self.verification == CONFIRMED and self.clinical_status not in NOT_EVIDENCE


class Reply(StrEnum):
    FOUND = "found"
    UNKNOWN_PATIENT = "unknown_patient"  # the hospital has no such patient (404)
    UNREADABLE = "unreadable"  # the hospital answered something we cannot read


@dataclass(frozen=True)
class Evidence:
    """What the hospital said: the diagnosis searched for, and conditions before joining."""

    reply: Reply
    diagnosis: list[Condition] = field(default_factory=list)
    earlier: list[Condition] = field(default_factory=list)
    detail: str = ""


def same_code(recorded: str, claimed: str) -> bool:
    """The record confirms the code claimed: the same code, or a more specific one under it."""
    recorded_code, claimed_code = normalise_icd10(recorded), normalise_icd10(claimed)
    if recorded_code is None or claimed_code is None:
        return False
    return recorded_code == claimed_code or recorded_code.startswith(claimed_code + ".")


def confirms(evidence: Evidence, icd10: str, diagnosed_on: date) -> bool:
    return any(_matches(c, icd10, diagnosed_on) and c.counts for c in evidence.diagnosis)


def tentative(evidence: Evidence, icd10: str, diagnosed_on: date) -> bool:
    """The record shows the diagnosis, but not (yet) as confirmed."""
    return any(
        _matches(c, icd10, diagnosed_on) and c.verification in TENTATIVE for c in evidence.diagnosis
    )


def _matches(condition: Condition, icd10: str, diagnosed_on: date) -> bool:
    return same_code(condition.icd10, icd10) and condition.onset == diagnosed_on


def undisclosed(
    evidence: Evidence, illness_code: str, plan: str, catalog: Catalog, joined_on: date
) -> Condition | None:
    """An earlier condition of the same covered illness, begun before the member joined."""
    for condition in evidence.earlier:
        if condition.onset >= joined_on or not condition.counts:
            continue
        diagnosis = catalog.find(condition.icd10, plan)
        if diagnosis is not None and diagnosis.illness.code == illness_code:
            return condition
    return None
