"""Investigations, pure: the case opened for a flagged or disputed claim, when its findings are
due, who may work it, what evidence it may hold, and what its findings mean for the decision.

A flagged claim goes to `investigating` with a case; a reviewer may open one for any claim
waiting for a person, or for an announced claim a member objected to (disputed). The case is
assigned to an investigator, of our own staff or of an outside firm (the 调查评估机构 that does
on-site checks); they add notes and evidence files and file findings, which send the claim back
to the review queue. A decision against the findings rests on two reviewers (four eyes).
"""

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from domain.claims import Reason
from domain.plans import Plan


class Cause(StrEnum):
    FLAGGED = "flagged"  # a fraud flag sent it (domain.flags)
    DISPUTED = "disputed"  # a member objected to the announced case
    REVIEWER = "reviewer"  # a reviewer asked for facts the records do not give


class Finding(StrEnum):
    SUPPORTS = "supports"  # the facts found bear the claim out
    CONTRADICTS = "contradicts"  # they show a reason to reject it (coded)
    INCONCLUSIVE = "inconclusive"  # neither: the reviewer decides on what there is


# The reasons an investigation can find against a claim: facts, not the rules' own checks.
FINDING_REASONS = (
    Reason.UNDISCLOSED_CONDITION,
    Reason.NOT_CONFIRMED_BY_RECORDS,
    Reason.NO_HOSPITAL_RECORD,
    Reason.CRITERIA_NOT_MET,
)
# Evidence files: what a phone's camera, a scanner or a report writer makes, and no larger.
EVIDENCE_TYPES = {"application/pdf", "image/jpeg", "image/png", "text/plain"}
EVIDENCE_MAX_BYTES = 20 * 1024 * 1024


def due(opened_at: datetime, plan: Plan) -> datetime:
    return opened_at + timedelta(days=plan.investigation_due_days)


def holder_refusal(actor: str, investigator: str | None) -> str | None:
    """Why `actor` may not add to or close the case now, or None: only its investigator."""
    if investigator is None:
        return "the case is not assigned; assign an investigator first"
    if investigator != actor:
        return f"the case is assigned to {investigator}; only they add to it or close it"
    return None


def finding_refusal(finding: Finding, reason: Reason | None) -> str | None:
    """Findings against a claim name the coded reason they found; the others name none."""
    if finding == Finding.CONTRADICTS and reason not in FINDING_REASONS:
        known = ", ".join(FINDING_REASONS)
        return f"findings against the claim need a reason, one of: {known}"
    if finding != Finding.CONTRADICTS and reason is not None:
        return f"only findings against the claim carry a reason ({finding} carries none)"
    return None


def against_findings(approve: bool, findings: Iterable[Finding]) -> bool:
    """A decision that goes against anything the claim's investigations found: it needs a
    second reviewer. Every case counts, so a later case cannot wash out an earlier finding."""
    found = set(findings)
    return (approve and Finding.CONTRADICTS in found) or (not approve and Finding.SUPPORTS in found)


def decider_refusal(reviewer: str, investigators: Iterable[str]) -> str | None:
    """Who investigates a claim does not also decide it."""
    if reviewer in set(investigators):
        return f"{reviewer} investigated the claim; a reviewer who did not decides it"
    return None


def evidence_refusal(data: bytes, media_type: str) -> str | None:
    size = len(data)
    if size == 0:
        return "the file is empty"
    if size > EVIDENCE_MAX_BYTES:
        return f"the file is {size} bytes; at most {EVIDENCE_MAX_BYTES} bytes (20 MiB)"
    if media_type not in EVIDENCE_TYPES:
        return f"{media_type or 'no type'} is not accepted; send one of {sorted(EVIDENCE_TYPES)}"
    if not _looks_like(data, media_type):
        return f"the file's bytes are not {media_type}; send it with the type it is"
    return None


# The first bytes each type begins with: a file is served back with the type it came with, so
# it must be what it says (no page sent as a picture).
_SIGNATURES = {
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
}


def _looks_like(data: bytes, media_type: str) -> bool:
    if media_type == "text/plain":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return not text.lstrip().startswith("<")  # not a page
    return data.startswith(_SIGNATURES[media_type])


def content_key(data: bytes) -> str:
    """The file's name in the evidence store: its SHA-256, so it is stored once and any change
    to it is seen when it is read back."""
    return hashlib.sha256(data).hexdigest()
