"""The transparent part for members: object to an announced case (我有异议), ask for a jury,
pass the juror exam and vote on juries (赔审团)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from api import clock
from api.access import Member_, may_read
from api.claims import reason_for_members
from api.problems import MAX_ID, Problem, SubmissionRef, not_found
from api.throttle import Throttled
from broker.database import engine
from domain.announcements import mask_name
from domain.calendar import age_on, local_date
from domain.db import transaction
from domain.disputes import objection_window
from domain.illnesses import load_catalog
from domain.models import Member, SharingCycle
from domain.plans import get_plan
from domain.services import claims as claim_service
from domain.services import disputes
from domain.services.announcements import SHOWN
from domain.services.statements import own_rows
from domain.terms import load_terms, mark_exam

router = APIRouter(tags=["disputes"])


class NewObjection(BaseModel):
    reason: Annotated[str, Field(min_length=5, max_length=2000)]
    evidence: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, description="A link to the evidence, if any."
    )


class ObjectionView(BaseModel):
    objection_id: int
    case_ref: str
    status: str
    reason: str
    evidence: str | None = Field(description="The objector's link to the evidence, if any.")
    filed_at: datetime
    decided_at: datetime | None
    note: str | None


class Filed(ObjectionView):
    objections_until: datetime


class JuryAsked(BaseModel):
    jury_id: int
    closes_at: datetime
    min_votes: int


class ExamQuestion(BaseModel):
    id: str
    text_zh: str
    choices: list[str]


class Exam(BaseModel):
    pass_mark: int
    questions: list[ExamQuestion]


class ExamAnswers(BaseModel):
    answers: dict[str, int] = Field(description="Each question's id and the chosen index.")


class ExamResult(BaseModel):
    right: int
    asked: int
    passed: bool
    certified: bool


class OpenJury(BaseModel):
    jury_id: int
    plan: str
    closes_at: datetime
    min_votes: int
    masked_name: str
    age: int
    sex: str
    province: str
    illness: str
    amount_fen: int | None
    rejected_for: str | None
    rejection: str | None


class Vote(BaseModel):
    support: bool = Field(description="true: pay the claim; false: do not.")


class VoteCast(BaseModel):
    jury_id: int
    support: bool


@router.post("/v1/cases/{case_ref}/objections", status_code=201, dependencies=Throttled)
def object_to(
    case_ref: SubmissionRef, body: NewObjection, who: Member_, response: Response
) -> Filed:
    """Object to a case on the 公示 (我有异议): once per member per case, inside the window."""
    now = clock.now()
    with transaction(engine()) as session:
        try:
            claim = claim_service.find_claim(session, case_ref)
        except claim_service.ClaimNotFound:
            claim = None
        if claim is None or claim.cycle_id is None or claim.state not in SHOWN:
            raise not_found(f"announced case {case_ref}")  # unannounced claims are not public
        try:
            filed = disputes.file_objection(
                session, case_ref, who.member_ref, body.reason, body.evidence, now
            )
        except disputes.Refused as error:
            once = "already objected" in str(error)
            status, kind = (409, "already-objected") if once else (422, "objection-refused")
            raise Problem(status, kind, "The objection is not taken", str(error)) from None
        cycle = session.get(SharingCycle, claim.cycle_id)
        assert cycle is not None
        _, until = objection_window(cycle.announce_on, get_plan(cycle.plan))
        response.headers["Location"] = "/v1/me/objections"
        return Filed(**objection_view(filed, case_ref).model_dump(), objections_until=until)


def objection_view(found, case_ref: str) -> ObjectionView:
    return ObjectionView(
        objection_id=found.id,
        case_ref=case_ref,
        status=found.status,
        reason=found.reason,
        evidence=found.evidence,
        filed_at=found.filed_at,
        decided_at=found.decided_at,
        note=found.note,
    )


@router.get("/v1/me/objections")
def my_objections(who: Member_) -> list[ObjectionView]:
    """The objections the caller filed and what became of them."""
    with transaction(engine()) as session:
        ids = [m.id for m in own_rows(session, who.member_ref) if m.id is not None]
        return [objection_view(o, ref) for o, ref in disputes.objections_of(session, ids)]


@router.post("/v1/claims/{submission_id}/jury", status_code=201, dependencies=Throttled)
def ask_for_jury(submission_id: SubmissionRef, who: Member_) -> JuryAsked:
    """The applicant (or their payer) of a rejected claim asks for a jury of members."""
    with transaction(engine()) as session:
        try:
            claim = claim_service.find_claim(session, submission_id)
        except claim_service.ClaimNotFound:
            claim = None
        if claim is None or not may_read(session, who, claim.member_id):
            raise not_found(f"claim {submission_id}")
        try:
            case = disputes.request_jury(session, submission_id, clock.now())
        except disputes.Refused as error:
            raise Problem(422, "jury-refused", "A jury cannot be asked", str(error)) from None
        return JuryAsked(jury_id=case.id or 0, closes_at=case.closes_at, min_votes=case.min_votes)


@router.get("/v1/juror-exam", tags=["public"])
def juror_exam() -> Exam:
    """The juror certification exam (赔审员考试) on the plan's rules."""
    terms = load_terms()
    return Exam(
        pass_mark=terms.exam_pass_mark,
        questions=[
            ExamQuestion(id=q.id, text_zh=q.text_zh, choices=list(q.choices))
            for q in terms.exam_questions
        ],
    )


@router.post("/v1/me/juror-certification", dependencies=Throttled)
def take_exam(body: ExamAnswers, who: Member_) -> ExamResult:
    """Sit the juror exam; passing certifies the caller as a juror in every plan they are in."""
    result = mark_exam(load_terms(), body.answers)
    with transaction(engine()) as session:
        rows = own_rows(session, who.member_ref)
        if not rows:
            raise not_found(f"membership of {who.member_ref}: join first")
        certified = disputes.certify(session, rows, result.right, result.passed, clock.now())
    return ExamResult(
        right=result.right, asked=result.asked, passed=result.passed, certified=certified > 0
    )


@router.get("/v1/juries")
def juries(who: Member_) -> list[OpenJury]:
    """Juries still voting in the caller's plans, the cases masked as on the 公示."""
    now = clock.now()
    catalog = load_catalog()
    with transaction(engine()) as session:
        plans = {m.plan for m in own_rows(session, who.member_ref)}
        found = []
        for case, claim in disputes.open_juries(session, plans, now):
            member = session.get(Member, claim.member_id)
            assert member is not None and claim.plan is not None
            diagnosis = catalog.find(claim.icd10 or "", claim.plan)
            found.append(
                OpenJury(
                    jury_id=case.id or 0,
                    plan=claim.plan,
                    closes_at=case.closes_at,
                    min_votes=case.min_votes,
                    masked_name=mask_name(member.name),
                    age=age_on(member.birth_date, claim.diagnosed_on or local_date(now)),
                    sex=member.sex,
                    province=member.province,
                    illness=diagnosis.name_zh if diagnosis else str(claim.illness_code),
                    amount_fen=claim.amount_fen,
                    rejected_for=claim.reason_code,
                    rejection=reason_for_members(claim.reason_code),
                )
            )
        return found


@router.post("/v1/juries/{jury_id}/votes", status_code=201, dependencies=Throttled)
def vote(jury_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: Vote, who: Member_) -> VoteCast:
    """Vote once on an open jury: paying, 18 or older, certified, a member for 30 days, not the
    applicant or their family."""
    with transaction(engine()) as session:
        try:
            counted = disputes.cast_vote(
                session, jury_id, who.member_ref, body.support, clock.now()
            )
        except LookupError:
            raise not_found(f"jury {jury_id}") from None
        except disputes.Refused as error:
            raise Problem(422, "vote-refused", "The vote is not taken", str(error)) from None
    if not counted:
        raise Problem(409, "already-voted", "You have voted already", "the first vote stands")
    return VoteCast(jury_id=jury_id, support=body.support)
