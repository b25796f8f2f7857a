"""Investigations in the database: cases opened for flagged or disputed claims, assigned to an
investigator (staff or an outside firm), their notes and evidence files, and the findings that
send the claim back to the review queue (domain.investigations' rules). The claim is locked
before its case, always in that order."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import Session, col, func, select

from domain.claims import Reason, State
from domain.investigations import (
    Cause,
    Finding,
    content_key,
    due,
    evidence_refusal,
    finding_refusal,
    holder_refusal,
)
from domain.models import Claim, EvidenceFile, Investigation, InvestigationNote
from domain.plans import get_plan
from domain.services.events import move, note
from domain.services.review_tasks import queue_for_a_person
from domain.services.store import load_for_update

NOTE_MAX = 4000
# Where a claim with an open case may be: investigated, or disputed (objected, or deferred with
# its objection to the next cycle's list).
WAITS_ON_A_CASE = [State.INVESTIGATING, State.OBJECTED, State.SCHEDULED, State.ANNOUNCED]


class Refused(ValueError):
    """A step on a case that may not be taken now; the message says why."""


class CaseNotFound(LookupError):
    pass


class EvidenceStore(Protocol):
    """Where evidence files live, by their SHA-256 (broker.evidence); never the database."""

    def put(self, data: bytes) -> str: ...


def flagged(session: Session, claim: Claim, why: str, now: datetime) -> Investigation:
    """The rules' approval raised a fraud flag: the claim goes to an investigator."""
    move(session, claim, State.INVESTIGATING, "rules", now, why)
    return open_for(session, claim, Cause.FLAGGED, why, "rules", now)


def open_for(
    session: Session, claim: Claim, cause: Cause, why: str, by: str, now: datetime
) -> Investigation:
    """A case for the (locked) claim; its state is the caller's to move."""
    assert claim.id is not None and claim.plan
    if open_case_of(session, claim.id) is not None:
        raise Refused(f"claim {claim.submission_id} already has an open investigation")
    case = Investigation(
        claim_id=claim.id,
        plan=claim.plan,
        cause=cause,
        why=why[:500],
        opened_by=by,
        opened_at=now,
        due_at=due(now, get_plan(claim.plan)),
    )
    session.add(case)
    session.flush()
    return case


def open_case_of(session: Session, claim_id: int) -> Investigation | None:
    """The claim's open case (read under the claim's lock: each step locks the claim first)."""
    return session.exec(
        select(Investigation).where(
            Investigation.claim_id == claim_id, col(Investigation.closed_at).is_(None)
        )
    ).first()


def _case(session: Session, case_id: int) -> tuple[Claim, Investigation]:
    """The case and its claim, both locked (the claim first), refused once closed."""
    found = session.get(Investigation, case_id)
    if found is None:
        raise CaseNotFound(f"no investigation {case_id}")
    claim = load_for_update(session, Claim, found.claim_id)
    case = load_for_update(session, Investigation, case_id)
    assert claim is not None and case is not None
    if case.closed_at is not None:
        raise Refused(f"investigation {case_id} was closed ({case.finding}) on {case.closed_at}")
    return claim, case


def assign(
    session: Session, case_id: int, investigator: str, firm: str | None, by: str, now: datetime
) -> Investigation:
    """Give the case to an investigator: of our staff (no firm) or of an outside firm."""
    _, case = _case(session, case_id)
    if case.investigator == investigator and case.firm == (firm or None):
        return case
    case.investigator, case.firm, case.assigned_at = investigator, firm or None, now
    session.add(case)
    who = f"{investigator} ({firm})" if firm else investigator
    _note(session, case, by, now, f"assigned to {who}")
    return case


def add_note(session: Session, case_id: int, author: str, text: str, now: datetime) -> None:
    _, case = _case(session, case_id)
    _hold(case, author)
    if not text.strip():
        raise Refused("the note is empty")
    _note(session, case, author, now, text[:NOTE_MAX])


def add_evidence(
    session: Session,
    case_id: int,
    author: str,
    data: bytes,
    media_type: str,
    label: str,
    store: EvidenceStore,
    now: datetime,
) -> EvidenceFile:
    """Store the file by its hash (outside the database) and list it on the case; the same file
    again is the same entry."""
    _, case = _case(session, case_id)
    _hold(case, author)
    if why := evidence_refusal(data, media_type):
        raise Refused(why)
    sha = content_key(data)
    known = session.exec(
        select(EvidenceFile).where(
            EvidenceFile.investigation_id == case_id, EvidenceFile.sha256 == sha
        )
    ).first()
    # The bytes first, and again when the row is there: a row must never name a file that is
    # not there whole (the store mends a missing or damaged copy; a file no row names is
    # harmless, and the same bytes are stored once).
    if store.put(data) != sha:
        raise RuntimeError("the evidence store named the file by another hash")
    if known is not None:
        return known
    evidence = EvidenceFile(
        investigation_id=case_id,
        sha256=sha,
        size_bytes=len(data),
        media_type=media_type,
        label=(label.strip() or "evidence")[:200],
        added_by=author,
        added_at=now,
    )
    session.add(evidence)
    session.flush()
    return evidence


def close(
    session: Session,
    case_id: int,
    by: str,
    finding: Finding,
    reason: Reason | None,
    summary: str,
    now: datetime,
) -> Investigation:
    """File the findings: the case closes and the claim goes back to a reviewer, who decides on
    them (a decision against them needs a second reviewer: domain.investigations)."""
    claim, case = _case(session, case_id)
    _hold(case, by)
    if why := finding_refusal(finding, reason):
        raise Refused(why)
    if not summary.strip():
        raise Refused("the findings need a summary a reviewer can read")
    case.closed_at, case.finding = now, finding
    case.finding_reason = str(reason) if reason else None
    case.summary = summary[:2000]
    session.add(case)
    found = f"investigation {case_id}: {finding}" + (f" ({reason})" if reason else "")
    if claim.state == State.INVESTIGATING:
        move(session, claim, State.NEEDS_REVIEW, f"investigator:{by}", now, found)
        queue_for_a_person(session, claim, now)
    else:  # disputed: the objection's re-review decides, now with the findings
        note(session, claim, f"investigator:{by}", now, found)
    return case


def _hold(case: Investigation, actor: str) -> None:
    if why := holder_refusal(actor, case.investigator):
        raise Refused(f"investigation {case.id}: {why}")


def _note(session: Session, case: Investigation, author: str, now: datetime, text: str) -> None:
    assert case.id is not None
    session.add(InvestigationNote(investigation_id=case.id, author=author, at=now, text=text))


def closed_cases(session: Session, claim_id: int) -> list[Investigation]:
    """The claim's closed cases, in the order their findings were filed: the decision rests on
    all of them."""
    return list(
        session.exec(
            select(Investigation)
            .where(Investigation.claim_id == claim_id, col(Investigation.closed_at).is_not(None))
            .order_by(col(Investigation.closed_at), col(Investigation.id))
        ).all()
    )


@dataclass(frozen=True)
class CaseFile:
    case: Investigation
    submission_id: str
    notes: list[InvestigationNote]
    evidence: list[EvidenceFile]


def case_file(session: Session, case_id: int) -> CaseFile:
    case = session.get(Investigation, case_id)
    if case is None:
        raise CaseNotFound(f"no investigation {case_id}")
    claim = session.get(Claim, case.claim_id)
    assert claim is not None
    notes = session.exec(
        select(InvestigationNote)
        .where(InvestigationNote.investigation_id == case_id)
        .order_by(col(InvestigationNote.id))
    ).all()
    files = session.exec(
        select(EvidenceFile)
        .where(EvidenceFile.investigation_id == case_id)
        .order_by(col(EvidenceFile.id))
    ).all()
    return CaseFile(case, claim.submission_id, list(notes), list(files))


def evidence_of(session: Session, case_id: int, sha256: str) -> EvidenceFile | None:
    return session.exec(
        select(EvidenceFile).where(
            EvidenceFile.investigation_id == case_id, EvidenceFile.sha256 == sha256
        )
    ).first()


def open_cases(
    session: Session, plan: str | None = None, limit: int = 50
) -> list[tuple[Investigation, str]]:
    """Open cases, the soonest due first, with their claims' submission ids."""
    query = (
        select(Investigation, Claim.submission_id)
        .join(Claim, col(Claim.id) == Investigation.claim_id)
        .where(col(Investigation.closed_at).is_(None))
    )
    if plan is not None:
        query = query.where(Investigation.plan == plan)
    query = query.order_by(col(Investigation.due_at), col(Investigation.id)).limit(limit)
    return [(case, ref) for case, ref in session.exec(query).all()]


@dataclass(frozen=True)
class CaseFigures:
    plan: str
    open: int
    overdue: int
    unassigned: int
    with_firms: int


def case_figures(session: Session, now: datetime) -> list[CaseFigures]:
    rows = session.exec(
        select(
            Investigation.plan,
            func.count(),
            func.count().filter(Investigation.due_at <= now),
            func.count().filter(col(Investigation.investigator).is_(None)),
            func.count().filter(col(Investigation.firm).is_not(None)),
        )
        .where(col(Investigation.closed_at).is_(None))
        .group_by(Investigation.plan)
    ).all()
    return [CaseFigures(*row) for row in rows]


def finding_figures(session: Session) -> dict[tuple[str, str], int]:
    """Closed cases by cause and finding."""
    rows = session.exec(
        select(Investigation.cause, Investigation.finding, func.count())
        .where(col(Investigation.closed_at).is_not(None))
        .group_by(Investigation.cause, Investigation.finding)
    ).all()
    return {(cause, finding or ""): n for cause, finding, n in rows}


def stranded(session: Session) -> list[str]:
    """Claims investigating with no open case, and open cases whose claim no longer waits on
    them: either would leave a claim where no one looks (the audit's check)."""
    open_ids = select(Investigation.claim_id).where(col(Investigation.closed_at).is_(None))
    lost = session.exec(
        select(Claim.submission_id).where(
            Claim.state == State.INVESTIGATING, col(Claim.id).not_in(open_ids)
        )
    ).all()
    orphaned = session.exec(
        select(Investigation.id, Claim.submission_id, Claim.state)
        .join(Claim, col(Claim.id) == Investigation.claim_id)
        .where(col(Investigation.closed_at).is_(None))
        .where(col(Claim.state).not_in(WAITS_ON_A_CASE))
    ).all()
    return [f"claim {ref}: investigating, but no case is open" for ref in lost] + [
        f"investigation {case}: open, but claim {ref} is {state}" for case, ref, state in orphaned
    ]
