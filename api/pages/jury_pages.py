"""赔审团: the juror exam, the open juries of the member's plans (masked as on the 公示) and the
vote."""

import re
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse

from api import disputes
from api.pages.common import Refusal, card_of, in_thread, page, posted, refused
from api.pages.session import member
from api.problems import MAX_ID, Problem

router = APIRouter(prefix="/app", include_in_schema=False)
ANSWER = re.compile(r"[0-9]{1,2}")  # a choice's index, ASCII digits only


@router.get("/jury")
async def jury(request: Request) -> HTMLResponse:
    who = member(request)
    card = await card_of(who)
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
    answers = {q.id: int(form[q.id]) for q in questions if ANSWER.fullmatch(form.get(q.id, ""))}
    try:
        result = await in_thread(disputes.take_exam, disputes.ExamAnswers(answers=answers), who)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/jury")
    return page("exam_result.html", who=who, result=result, tab="jury")


@router.post("/juries/{jury_id}/vote")
async def vote(jury_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request) -> Response:
    who = member(request)
    form = await posted(request, who)
    if form.get("support") not in ("yes", "no"):  # never a vote the juror did not choose
        return refused(Refusal("请选择支持或不支持赔付", "没有记录投票。"), who, "/app/jury")
    support = form["support"] == "yes"
    try:
        await in_thread(disputes.vote, jury_id, disputes.Vote(support=support), who)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/jury")
    said = "支持赔付" if support else "不支持赔付"
    lines = [f"您对第{jury_id}号评议投了“{said}”。每位赔审员只投一次，第一票有效。"]
    return page("message.html", 201, who=who, heading="已投票", lines=lines, back="/app/jury")
