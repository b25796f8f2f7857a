"""The member's own pages: 我的互助 (the card), 分摊明细 (each cycle's share and debit, and the
year against the cap), joining with the health declaration and the auto-debit consent, and
leaving. Each calls the API's own handler, so a page shows what the API answers."""

from collections import defaultdict
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api import members, public
from api.pages import proof_pages
from api.pages.common import Refusal, card_of, in_thread, page, posted, refused
from api.pages.session import member
from api.problems import Problem
from domain.plans import get_plan

router = APIRouter(prefix="/app", include_in_schema=False)
CHARGES_SHOWN = 50  # the API's largest page: two years of cycles


@router.get("/me")
async def card(request: Request) -> HTMLResponse:
    who = member(request)
    found = await card_of(who)
    return page("card.html", who=who, card=found, tab="me")


@dataclass(frozen=True)
class YearTotal:
    member_ref: str
    plan: str
    year: int
    total_fen: int
    cap_fen: int


def year_totals(charges: list[members.ChargeView]) -> list[YearTotal]:
    """Each member's charges by calendar year of the charge day, against the plan's cap."""
    totals: dict[tuple[str, str, int], int] = defaultdict(int)
    for line in charges:
        totals[line.member_ref, line.plan, line.charge_on.year] += line.amount_fen
    return [
        YearTotal(ref, plan, year, total, get_plan(plan).annual_cap_fen)
        for (ref, plan, year), total in sorted(totals.items())
    ]


@router.get("/me/charges")
async def charges(request: Request) -> HTMLResponse:
    who = member(request)
    found = await in_thread(members.my_charges, who, None, CHARGES_SHOWN)
    log_key = await in_thread(proof_pages.log_public_key)
    return page(
        "charges.html",
        who=who,
        found=found,
        years=year_totals(found.charges),
        tab="charges",
        log_key=log_key,
    )


@router.get("/join")
async def join_form(request: Request) -> HTMLResponse:
    return _join_page(member(request), {}, family=False)


@router.get("/me/dependants/new")
async def family_form(request: Request) -> HTMLResponse:
    return _join_page(member(request), {}, family=True)


def _join_page(who, entered: dict, family: bool, error: Refusal | None = None) -> HTMLResponse:
    return page(
        "join.html",
        error.status if error else 200,
        who=who,
        terms=members.terms(),
        plans=public.plans(),
        entered=entered,
        family=family,
        error=error,
    )


@router.post("/join")
async def join(request: Request) -> Response:
    return await _enrol(request, family=False)


@router.post("/me/dependants")
async def enrol_family(request: Request) -> Response:
    return await _enrol(request, family=True)


async def _enrol(request: Request, family: bool) -> Response:
    """Join, or enrol a family member the caller pays for: the same form and the same rules
    (the API's handlers), the family member's own id added."""
    who = member(request)
    form = await posted(request, who)
    terms = members.terms()
    model = members.Dependant if family else members.Applicant
    extra = {"member_ref": form.get("member_ref", "")} if family else {}
    try:
        body = model(
            **extra,
            plan=form.get("plan", ""),
            birth_date=form.get("birth_date", ""),
            sex=form.get("sex", ""),
            province=form.get("province", ""),
            name=form.get("name") or None,
            health_answers={
                q.id: form[f"health-{q.id}"] == "yes"
                for q in terms.health_questions
                if form.get(f"health-{q.id}") in ("yes", "no")
            },
            # Only a ticked box is consent: the form never ticks it, and absent means no.
            debit_consent=members.Consent(
                version=form.get("consent_version", ""), agreed=form.get("consent") == "agreed"
            ),
        )
        enrol = members.enrol_dependant if family else members.join
        await in_thread(enrol, body, who, Response())
    except ValidationError as error:
        return _join_page(who, form, family, Refusal.invalid(error))
    except Problem as error:
        return _join_page(who, form, family, Refusal.of(error))
    found = await card_of(who)
    return page("card.html", 201, who=who, card=found, joined=body, tab="me")


@router.get("/me/exit")
async def exit_form(request: Request) -> HTMLResponse:
    who = member(request)
    found = await card_of(who)
    return page("exit.html", who=who, card=found, tab="me")


@router.post("/me/exit")
async def leave(request: Request) -> Response:
    who = member(request)
    form = await posted(request, who)
    if form.get("confirm") != "yes":
        refusal = Refusal("请确认退出", "勾选“我确认退出”后再提交。")
        return refused(refusal, who, "/app/me/exit")
    try:
        body = members.ExitRequest(plan=form.get("plan", ""), member_ref=form.get("member_ref"))
        done = await in_thread(members.leave, body, who)
    except ValidationError as error:
        return refused(Refusal.invalid(error), who, "/app/me/exit")
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/me/exit")
    return page("exit_done.html", who=who, done=done, tab="me")
