"""赔审团: the juror exam, the open juries of the member's plans (masked as on the 公示) and the
vote; and 我的申请: a member's claims, each with its history and a jury to ask for."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from api import claims, disputes, members
from api.pages.common import Refusal, in_thread, page, posted, refused
from api.pages.render import shanghai
from api.pages.session import member
from api.problems import Problem

router = APIRouter(prefix="/app", include_in_schema=False)
CLAIMS_SHOWN = 100  # the API's largest page


@router.get("/jury")
async def jury(request: Request) -> HTMLResponse:
    who = member(request)
    try:
        card = await in_thread(members.me, who)
    except Problem:
        return page("not_member.html", 404, who=who, tab="jury")
    certified = any(m.jury_certified for m in card.memberships if not m.exited_at)
    open_juries = await in_thread(disputes.juries, who) if certified else []
    return page(
        "jury.html",
        who=who,
        certified=certified,
        exam=disputes.juror_exam(),
        juries=open_juries,
        tab="jury",
    )


@router.post("/jury/exam")
async def exam(request: Request) -> Response:
    who = member(request)
    form = await posted(request, who)
    questions = disputes.juror_exam().questions
    answers = {q.id: int(form[q.id]) for q in questions if form.get(q.id, "").isdigit()}
    try:
        result = await in_thread(disputes.take_exam, disputes.ExamAnswers(answers=answers), who)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/jury")
    return page("exam_result.html", who=who, result=result, tab="jury")


@router.post("/juries/{jury_id}/vote")
async def vote(jury_id: int, request: Request) -> Response:
    who = member(request)
    form = await posted(request, who)
    support = form.get("support") == "yes"
    try:
        await in_thread(disputes.vote, jury_id, disputes.Vote(support=support), who)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/jury")
    said = "支持赔付" if support else "不支持赔付"
    lines = [f"您对第{jury_id}号评议投了“{said}”。每位赔审员只投一次，第一票有效。"]
    return page("message.html", 201, who=who, heading="已投票", lines=lines, back="/app/jury")


@router.get("/me/claims")
async def my_claims(request: Request) -> HTMLResponse:
    who = member(request)
    try:
        found = await in_thread(claims.my_claims, who, CLAIMS_SHOWN)
    except Problem:
        return page("not_member.html", 404, who=who, tab="claims")
    return page("claims.html", who=who, claims=found, tab="claims")


@router.get("/claims/{submission_id}")
async def claim(submission_id: str, request: Request) -> HTMLResponse:
    who = member(request)
    try:
        found = await in_thread(claims.claim, submission_id, who)
        listed = await in_thread(claims.my_claims, who, CLAIMS_SHOWN)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/me/claims")
    line = next((c for c in listed if c.submission_id == submission_id), None)
    return page("claim.html", who=who, claim=found, line=line, tab="claims")


@router.post("/claims/{submission_id}/jury")
async def ask_for_jury(submission_id: str, request: Request) -> Response:
    who = member(request)
    await posted(request, who)
    try:
        asked = await in_thread(disputes.ask_for_jury, submission_id, who)
    except Problem as error:
        return refused(Refusal.of(error), who, f"/app/claims/{submission_id}")
    lines = [
        f"已为申请 {submission_id} 组织赔审团（第{asked.jury_id}号评议）。",
        f"至少{asked.min_votes}位赔审员投票，评议截止于 {shanghai(asked.closes_at)}。",
    ]
    back = f"/app/claims/{submission_id}"
    return page("message.html", 201, who=who, heading="已申请赔审团", lines=lines, back=back)
