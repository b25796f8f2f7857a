"""我的申请: a member's claims and their family's, each with its history and a jury to ask for,
and the form that applies for aid (under an idempotency key made with the form, so a second
tap is the same application)."""

from uuid import uuid4

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from api import claims, disputes
from api.pages.common import Refusal, card_of, in_thread, page, posted, refused
from api.pages.render import part, shanghai
from api.pages.session import member
from api.problems import Problem, SubmissionRef
from domain.claims import Submission
from domain.illnesses import load_catalog

router = APIRouter(prefix="/app", include_in_schema=False)
CLAIMS_SHOWN = 100  # the API's largest page


@router.get("/me/claims")
async def my_claims(request: Request) -> HTMLResponse:
    who = member(request)
    try:
        found = await in_thread(claims.my_claims, who, CLAIMS_SHOWN)
    except Problem:
        return page("not_member.html", 404, who=who, tab="claims")
    return page("claims.html", who=who, claims=found, tab="claims")


@router.get("/claims/{submission_id}")
async def claim(submission_id: SubmissionRef, request: Request) -> HTMLResponse:
    who = member(request)
    try:
        found = await in_thread(claims.claim, submission_id, who)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/me/claims")
    return page("claim.html", who=who, claim=found, tab="claims")


@router.post("/claims/{submission_id}/jury")
async def ask_for_jury(submission_id: SubmissionRef, request: Request) -> Response:
    who = member(request)
    await posted(request, who)
    try:
        asked = await in_thread(disputes.ask_for_jury, submission_id, who)
    except Problem as error:
        return refused(Refusal.of(error), who, f"/app/claims/{part(submission_id)}")
    lines = [
        f"已为申请 {submission_id} 组织赔审团（第{asked.jury_id}号评议）。",
        f"至少{asked.min_votes}位赔审员投票，评议截止于 {shanghai(asked.closes_at)}。",
    ]
    back = f"/app/claims/{part(submission_id)}"
    return page("message.html", 201, who=who, heading="已申请赔审团", lines=lines, back=back)


@router.get("/me/claims/new")
async def claim_form(request: Request) -> HTMLResponse:
    who = member(request)
    card = await card_of(who)
    return _claim_page(who, card, {"submission_id": str(uuid4())})


def _claim_page(who, card, entered: dict, error: Refusal | None = None) -> HTMLResponse:
    catalog = load_catalog()
    plans = {m.plan for m in card.memberships + card.dependants}
    covered = {plan: catalog.covered_by(plan) for plan in sorted(plans)}
    return page(
        "claim_form.html",
        error.status if error else 200,
        who=who,
        card=card,
        covered=covered,
        entered=entered,
        error=error,
        tab="claims",
    )


@router.post("/me/claims")
async def apply(request: Request) -> Response:
    who = member(request)
    form = await posted(request, who)
    plan, _, member_ref = form.get("membership", "").partition("|")
    body = {
        "submission_id": form.get("submission_id", ""),
        "member_ref": member_ref,
        "plan": plan,
        "icd10": form.get("icd10", "").strip(),
        "diagnosed_on": form.get("diagnosed_on", ""),
        "hospital": form.get("hospital", "").strip(),
        "accident": {"yes": True, "no": False}.get(form.get("accident", "")),
    }
    try:
        # Checked as intake will check it, so that a slip is fixed here, not rejected later.
        Submission.model_validate(body)
    except ValidationError as error:
        card = await card_of(who)
        return _claim_page(who, card, form, Refusal.invalid(error))
    try:
        # The form's own id is the key: tapped twice, it is one application.
        sent = await in_thread(claims.submit, body, body["submission_id"], who, Response())
    except Problem as error:
        card = await card_of(who)
        return _claim_page(who, card, form, Refusal.of(error))
    return RedirectResponse(f"/app/claims/{part(sent.submission_id)}", status_code=303)
