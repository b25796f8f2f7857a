"""Investigations for staff (the same as `huzhu investigate`): a reviewer opens a case for a
flagged or disputed claim; investigators (the `investigator` role) assign it, add notes and
evidence files, and file the findings that send the claim back to a reviewer. Evidence bytes go
to the evidence store by their hash, never into a row or a message."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from api import clock
from api.access import with_role
from api.auth import Caller
from api.problems import MAX_ID, Problem, not_found
from broker.database import engine
from broker.evidence import EvidenceCorrupt, EvidenceMissing, evidence_store
from domain.claims import Reason
from domain.db import transaction
from domain.investigations import EVIDENCE_TYPES, Finding
from domain.models import Claim, EvidenceFile, Investigation
from domain.plans import PlanCode
from domain.services import claims as claim_service
from domain.services import investigations, review

router = APIRouter(prefix="/v1/investigations", tags=["staff"])
Reviewer = Annotated[Caller, Depends(with_role("reviewer"))]
Investigator = Annotated[Caller, Depends(with_role("investigator"))]
Staff = Annotated[Caller, Depends(with_role("reviewer", "investigator"))]
CaseId = Annotated[int, Path(ge=1, le=MAX_ID)]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
BINARY = {"schema": {"type": "string", "format": "binary"}}


class OpenCase(BaseModel):
    submission_id: Annotated[
        str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    ]
    why: Annotated[str, Field(min_length=1, max_length=500, description="What to find out.")]


class Assignment(BaseModel):
    investigator: Annotated[str, Field(min_length=1, max_length=64)]
    firm: Annotated[str | None, Field(max_length=100, description="None: our own staff.")] = None


class NoteText(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=investigations.NOTE_MAX)]


class Findings(BaseModel):
    finding: Finding
    reason: Reason | None = Field(
        default=None, description="Findings against the claim: the coded reason they found."
    )
    summary: Annotated[str, Field(min_length=1, max_length=2000)]


class EvidenceView(BaseModel):
    sha256: str
    label: str
    media_type: str
    size_bytes: int
    added_by: str
    added_at: datetime


class NoteView(BaseModel):
    at: datetime
    author: str
    text: str


class CaseView(BaseModel):
    case_id: int
    submission_id: str
    plan: str
    cause: str = Field(description="flagged, disputed or reviewer.")
    why: str
    opened_by: str
    opened_at: datetime
    due_at: datetime
    overdue: bool
    investigator: str | None
    firm: str | None = Field(description="The outside firm, if not our own staff.")
    closed_at: datetime | None
    finding: str | None
    finding_reason: str | None
    summary: str | None
    notes: list[NoteView] = []
    evidence: list[EvidenceView] = []


def case_view(case: Investigation, submission_id: str, full=None) -> CaseView:
    view = CaseView(
        case_id=case.id or 0,
        submission_id=submission_id,
        plan=case.plan,
        cause=case.cause,
        why=case.why,
        opened_by=case.opened_by,
        opened_at=case.opened_at,
        due_at=case.due_at,
        overdue=case.closed_at is None and clock.now() >= case.due_at,
        investigator=case.investigator,
        firm=case.firm,
        closed_at=case.closed_at,
        finding=case.finding,
        finding_reason=case.finding_reason,
        summary=case.summary,
    )
    if full is not None:
        view.notes = [NoteView(at=n.at, author=n.author, text=n.text) for n in full.notes]
        view.evidence = [evidence_view(e) for e in full.evidence]
    return view


def evidence_view(evidence: EvidenceFile) -> EvidenceView:
    return EvidenceView(
        sha256=evidence.sha256,
        label=evidence.label,
        media_type=evidence.media_type,
        size_bytes=evidence.size_bytes,
        added_by=evidence.added_by,
        added_at=evidence.added_at,
    )


def _step(work) -> CaseView:
    """One step on a case in a transaction: refused 409, unknown 404; answers the case."""
    try:
        with transaction(engine()) as session:
            case = work(session)
            claim = session.get(Claim, case.claim_id)
            assert claim is not None
            return case_view(case, claim.submission_id)
    except (claim_service.ClaimNotFound, investigations.CaseNotFound) as error:
        raise not_found(str(error).removeprefix("no ")) from None
    except ValueError as error:  # Refused: the message says why
        title = "The investigation step is refused"
        raise Problem(409, "investigation-refused", title, str(error)) from None


@router.post("", status_code=201)
def open_case(body: OpenCase, who: Reviewer) -> CaseView:
    """Send a claim to an investigator: one waiting for a reviewer (it leaves the queue until
    the findings come back), or an announced one a member objected to (disputed)."""
    return _step(
        lambda s: review.investigate(s, body.submission_id, body.why, who.member_ref, clock.now()),
    )


@router.get("")
def open_cases(
    _: Staff,
    plan: Annotated[PlanCode | None, Query(description="One plan's cases.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CaseView]:
    """The open cases, the soonest due first."""
    with transaction(engine()) as session:
        return [case_view(c, ref) for c, ref in investigations.open_cases(session, plan, limit)]


@router.get("/{case_id}")
def case_file(case_id: CaseId, _: Staff) -> CaseView:
    """A case in full: its notes and the list of its evidence files."""
    with transaction(engine()) as session:
        try:
            found = investigations.case_file(session, case_id)
        except investigations.CaseNotFound:
            raise not_found(f"investigation {case_id}") from None
        return case_view(found.case, found.submission_id, found)


@router.post("/{case_id}/assignment")
def assign(case_id: CaseId, body: Assignment, who: Investigator) -> CaseView:
    """Give the case to an investigator, of our staff or of an outside firm."""
    return _step(
        lambda s: investigations.assign(
            s, case_id, body.investigator, body.firm, who.member_ref, clock.now()
        ),
    )


@router.post("/{case_id}/notes")
def add_note(case_id: CaseId, body: NoteText, who: Investigator) -> CaseView:
    """A note on a case the caller holds."""

    def work(session):
        investigations.add_note(session, case_id, who.member_ref, body.text, clock.now())
        return session.get(Investigation, case_id)

    return _step(work)


@router.post(
    "/{case_id}/evidence",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": dict.fromkeys(sorted(EVIDENCE_TYPES), BINARY),
        }
    },
)
async def add_evidence(
    case_id: CaseId,
    request: Request,
    who: Investigator,
    label: Annotated[str, Query(max_length=200, description="What it is, e.g. 出院小结.")] = "",
) -> EvidenceView:
    """An evidence file (the body, as it is, with its Content-Type; up to 20 MiB) for a case
    the caller holds; stored by its SHA-256 outside the database. The same file again is the
    same entry."""
    data = await request.body()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    added: list[EvidenceFile] = []

    def work(session):
        added.append(
            investigations.add_evidence(
                session,
                case_id,
                who.member_ref,
                data,
                media_type,
                label,
                evidence_store(),
                clock.now(),
            )
        )
        return session.get(Investigation, case_id)

    _step(work)
    return evidence_view(added[0])


@router.get(
    "/{case_id}/evidence/{sha256}",
    response_class=Response,
    responses={200: {"content": dict.fromkeys(sorted(EVIDENCE_TYPES), BINARY)}},
)
def evidence_file(case_id: CaseId, sha256: Sha256, _: Staff) -> Response:
    """One of the case's evidence files, checked against its hash as it is read."""
    with transaction(engine()) as session:
        listed = investigations.evidence_of(session, case_id, sha256)
    if listed is None:
        raise not_found(f"evidence {sha256} of investigation {case_id}")
    try:
        data = evidence_store().get(sha256)
    except (EvidenceMissing, EvidenceCorrupt) as error:
        # The row is there and the bytes are not, or not whole: the store must be restored.
        title = "The evidence file cannot be read"
        raise Problem(500, "evidence-unavailable", title, str(error)) from None
    # Sent as a download, never rendered in the reviewer's browser as the type it claims.
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{sha256}"',
    }
    return Response(data, media_type=listed.media_type, headers=headers)


@router.post("/{case_id}/findings")
def file_findings(case_id: CaseId, body: Findings, who: Investigator) -> CaseView:
    """Close a case the caller holds: the claim goes back to a reviewer, and a decision against
    the findings needs a second reviewer."""
    return _step(
        lambda s: investigations.close(
            s, case_id, who.member_ref, body.finding, body.reason, body.summary, clock.now()
        ),
    )
