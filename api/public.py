"""Public endpoints (no token): health, the plans' rules, the current 公示 and closed cycles."""

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from api.problems import MAX_CYCLE_ID, Problem, not_found
from broker.database import engine
from domain.calendar import SHANGHAI
from domain.db import transaction
from domain.models import CycleStatus, Member, SharingCycle
from domain.plans import load_plans
from domain.services import payments as payment_service
from domain.services import winddown
from domain.services.announcements import Announcement as AnnouncementPage
from domain.services.announcements import announcement, current_cycle
from domain.winddown import WindDown

router = APIRouter()
# A CDN may keep the 公示 a minute and serve it stale while it fetches the next: on
# announcement day the members' reads land on the edge, not here.
ANNOUNCEMENT_CACHE = "public, max-age=60, stale-while-revalidate=300"
CLOSED_CYCLE_CACHE = "public, max-age=300"


class PlanRules(BaseModel):
    code: str
    name_zh: str
    name_en: str
    join_ages: tuple[int, int]
    exit_age: int
    waiting_days: int
    per_patient_cap_fen: int
    annual_cap_fen: int
    fee_rate_percent: float
    objection_days: int
    payout_days: int


class PublicCase(BaseModel):
    case_ref: str
    status: str
    masked_name: str
    age: int
    sex: str
    province: str
    illness: str
    amount_fen: int
    days_since_joining: int
    shared_fen: int


class WindDownNotice(BaseModel):
    """The plan is winding down: no one joins from `announce_at`, members share no cycle charged
    from `members_stop_sharing_on` (the platform pays those), it ends at `end_at`, and a first
    diagnosis up to `last_covered_day` may be claimed within the tail, until `last_tail_day` at
    the latest."""

    plan: str
    announce_at: datetime
    end_at: datetime
    members_stop_sharing_on: date
    last_covered_day: date
    last_tail_day: date
    tail_days: int
    refund_all_shares: bool


class Announcement(BaseModel):
    plan: str
    cycle_id: int
    status: str
    announce_on: date
    charge_on: date
    expected_share_fen: int
    sharing_members: int
    aid_fen: int
    fee_fen: int
    objections_from: str
    objections_until: str
    cases: list[PublicCase]
    platform_pays: bool = Field(
        default=False, description="The plan is winding down: members share nothing this cycle."
    )
    wind_down: WindDownNotice | None = None


class CycleFigures(BaseModel):
    plan: str
    cycle_id: int
    status: str
    announce_on: date
    charge_on: date
    sharing_members: int
    cases: int
    aid_fen: int
    fee_fen: int
    surplus_in_fen: int
    surplus_out_fen: int
    share_fen: int
    subsidy_fen: int
    charged_fen: int
    collected_fen: int
    outstanding_fen: int
    paid_out_fen: int


@router.get("/healthz", tags=["public"])
def healthz() -> dict[str, str]:
    """Answers once the database does."""
    with transaction(engine()) as session:
        session.exec(select(Member.id).limit(1)).first()
    return {"status": "ok"}


@router.get("/v1/plans", tags=["public"])
def plans() -> list[PlanRules]:
    """Every plan's rules as members see them."""
    return [
        PlanRules(
            code=p.code,
            name_zh=p.name_zh,
            name_en=p.name_en,
            join_ages=(p.min_join_age_years, p.max_join_age_years),
            exit_age=p.exit_age_years,
            waiting_days=p.waiting_days,
            per_patient_cap_fen=p.per_patient_cap_fen,
            annual_cap_fen=p.annual_cap_fen,
            fee_rate_percent=p.fee_rate_bp / 100,
            objection_days=p.objection_days,
            payout_days=p.payout_days,
        )
        for p in load_plans().values()
    ]


def known_plan(plan: str) -> str:
    if plan not in load_plans():
        raise Problem(404, "unknown-plan", "No such plan", f"plans: {', '.join(load_plans())}")
    return plan


@router.get(
    "/v1/plans/{plan}/announcement",
    tags=["public"],
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
def current_announcement(plan: str, request: Request) -> Announcement:
    """The current 公示: the latest published cycle's masked cases, expected share and sharing
    members, and the objection window. Cacheable: `ETag` and `Cache-Control`."""
    held = _held(known_plan(plan), request)
    return _answer(held.body, held.tag, request, ANNOUNCEMENT_CACHE)  # type: ignore[return-value]


def cached_announcement(plan: str, request: Request) -> Announcement:
    """The 公示 the API answers now (the member's pages show the same one)."""
    return _held(known_plan(plan), request).view


def _held(plan: str, request: Request) -> "_Page":
    pages = request.app.state.pages
    held = pages.get(plan)
    if held is None or held.expires < time.monotonic():
        view = _announcement(plan)
        held = _Page(time.monotonic() + PAGE_FRESH_SECONDS, view, *_encoded(view))
        pages[plan] = held
    return held


@dataclass(frozen=True)
class _Page:
    expires: float
    view: Announcement
    body: bytes
    tag: str


# Announcement day: every member opens the 公示 at once. Each app builds the page at most once
# per PAGE_FRESH_SECONDS (well inside what Cache-Control lets a CDN keep). The pages live on the
# app (`app.state.pages`, by plan), so an app never answers with another app's database.
PAGE_FRESH_SECONDS = 5.0


def _announcement(plan: str) -> Announcement:
    with transaction(engine()) as session:
        cycle = current_cycle(session, plan)
        if cycle is None:
            raise Problem(404, "no-announcement", "Nothing announced yet", f"{plan} has no 公示")
        return announcement_view(announcement(session, cycle))


def announcement_view(page: AnnouncementPage) -> Announcement:
    """The 公示 as the API answers it (and the pages and the static export show it)."""
    cycle = page.cycle
    return Announcement(
        plan=cycle.plan,
        cycle_id=cycle.id or 0,
        status=cycle.status,
        announce_on=cycle.announce_on,
        charge_on=cycle.charge_on,
        expected_share_fen=cycle.share_fen,
        sharing_members=cycle.sharing_members,
        aid_fen=cycle.aid_fen,
        fee_fen=cycle.fee_fen,
        objections_from=page.objections_from,
        objections_until=page.objections_until,
        cases=[PublicCase(**case.__dict__) for case in page.cases],
        platform_pays=page.wind_down is not None and page.wind_down.platform_pays(cycle.charge_on),
        wind_down=wind_down_notice(page.wind_down) if page.wind_down else None,
    )


def announced_wind_downs(session: Session, plans: set[str], now: datetime) -> list[WindDownNotice]:
    """The wind-downs of these plans that members have been told of by `now`."""
    return [
        wind_down_notice(ending)
        for plan, ending in sorted(winddown.wind_downs(session).items())
        if plan in plans and ending.announce_at <= now
    ]


def wind_down_notice(ending: WindDown) -> WindDownNotice:
    return WindDownNotice(
        plan=ending.plan,
        announce_at=ending.announce_at.astimezone(SHANGHAI),
        end_at=ending.end_at.astimezone(SHANGHAI),
        members_stop_sharing_on=ending.sharing_stops_on,
        last_covered_day=ending.last_covered_day,
        last_tail_day=ending.last_tail_day,
        tail_days=ending.tail_days,
        refund_all_shares=ending.refund_all_shares,
    )


@router.get(
    "/v1/plans/{plan}/cycles/{cycle_id}",
    tags=["public"],
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
def closed_cycle(
    plan: str,
    cycle_id: Annotated[int, Path(ge=1, le=MAX_CYCLE_ID)],
    request: Request,
) -> CycleFigures:
    """A closed cycle's figures: what was shared, charged, collected and paid out."""
    with transaction(engine()) as session:
        cycle = session.get(SharingCycle, cycle_id)
        if cycle is None or cycle.plan != known_plan(plan):
            raise not_found(f"cycle {cycle_id} of {plan}")
        if cycle.status != CycleStatus.CLOSED:
            raise Problem(404, "cycle-not-closed", "The cycle is not closed yet", cycle.status)
        money = payment_service.money_figures(session, cycle_id)
    body = CycleFigures(
        plan=plan,
        cycle_id=cycle_id,
        status=cycle.status,
        announce_on=cycle.announce_on,
        charge_on=cycle.charge_on,
        sharing_members=cycle.sharing_members,
        cases=cycle.cases,
        aid_fen=cycle.aid_fen,
        fee_fen=cycle.fee_fen,
        surplus_in_fen=cycle.surplus_in_fen,
        surplus_out_fen=cycle.surplus_out_fen,
        share_fen=cycle.share_fen,
        subsidy_fen=cycle.subsidy_fen,
        charged_fen=cycle.charged_fen,
        collected_fen=money["collected_fen"],
        outstanding_fen=money["outstanding_fen"],
        paid_out_fen=money["paid_out_fen"],
    )
    return cacheable(body, request, CLOSED_CYCLE_CACHE)  # type: ignore[return-value]


def cacheable(body: BaseModel, request: Request, policy: str) -> Response:
    """The body as JSON with a strong ETag and the cache policy; 304 when the client has it."""
    return _answer(*_encoded(body), request, policy)


def _encoded(body: BaseModel) -> tuple[bytes, str]:
    """The body's bytes and a strong ETag of them."""
    encoded = json.dumps(body.model_dump(mode="json"), ensure_ascii=False, sort_keys=True).encode()
    return encoded, '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'


def _answer(body: bytes, tag: str, request: Request, policy: str) -> Response:
    """The bytes with their ETag and cache policy; 304 when the client holds them already."""
    headers = {"ETag": tag, "Cache-Control": policy}
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
