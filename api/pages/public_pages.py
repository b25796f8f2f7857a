"""The pages anyone may open (the plans, the 公示, a wind-down's report, the login) and the
objection a member files from the 公示 (我有异议)."""

from datetime import datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import TypeAdapter, ValidationError

from api import clock, disputes, public, winddown
from api.auth import mint
from api.pages.common import Refusal, in_thread, page, posted, refused
from api.pages.session import (
    checked,
    logged_in,
    logged_out,
    member,
    safe_next,
    same_site,
    viewer,
)
from api.problems import Problem, SubmissionRef
from broker.settings import get_settings
from domain.members import MemberRef

MEMBER_REF = TypeAdapter(MemberRef)

router = APIRouter(prefix="/app", include_in_schema=False)
TOKEN_MINUTES = 8 * 60  # a demo login lasts a working day


@router.get("")
def home(request: Request) -> HTMLResponse:
    return page("home.html", who=viewer(request), plans=public.plans(), tab="home")


@router.get("/login")
def login_form(request: Request, next: str = "/app/me") -> HTMLResponse:
    return page("login.html", next=safe_next(next), embedded=get_settings().embedded)


@router.post("/login")
async def login(request: Request) -> Response:
    """The embedded default mints a development token for a member_ref; anywhere, a token the
    platform signed (posted by the platform's app) is checked and kept in the cookie."""
    same_site(request)
    form = await request.form()
    back = safe_next(str(form.get("next", "")))
    settings = get_settings()
    token = str(form.get("token", "")).strip()
    if not token and settings.embedded:
        try:
            member_ref = MEMBER_REF.validate_python(str(form.get("member_ref", "")).strip())
        except ValidationError:
            return _login_refused(back, "请填写成员编号（1–64个可打印字符），如 M0000113")
        token = mint(settings, member_ref, set(), TOKEN_MINUTES)
    if checked(token) is None:
        return _login_refused(back, "该登录凭证无效或已过期，请从互助应用重新进入")
    return logged_in(token, back, request, TOKEN_MINUTES * 60)


def _login_refused(back: str, detail: str) -> HTMLResponse:
    error = Refusal("登录失败", detail, 401)
    embedded = get_settings().embedded
    return page("login.html", 401, next=back, embedded=embedded, error=error)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    same_site(request)
    return logged_out()


@router.get("/plans/{plan}/announcement")
async def announcement(plan: str, request: Request) -> HTMLResponse:
    who = viewer(request)
    try:
        view = await in_thread(public.cached_announcement, plan, request)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app")
    now = clock.now()
    opens = datetime.fromisoformat(view.objections_from)
    closes = datetime.fromisoformat(view.objections_until)
    return page(
        "announcement.html", page=view, who=who, window_open=opens <= now < closes, tab="home"
    )


@router.get("/plans/{plan}/wind-down")
async def wind_down(plan: str, request: Request) -> HTMLResponse:
    """The wind-down's report, as `huzhu plan report` and the API give it."""
    who = viewer(request)
    try:
        report = await in_thread(winddown.wind_down_report, plan)
    except Problem as error:
        return refused(Refusal.of(error), who, "/app")
    return page("wind_down.html", report=report, who=who, tab="home")


@router.post("/cases/{case_ref}/objection")
async def object_to(case_ref: SubmissionRef, request: Request) -> Response:
    who = member(request)
    form = await posted(request, who)
    try:
        body = disputes.NewObjection(
            reason=form.get("reason", "").strip(), evidence=form.get("evidence") or None
        )
        filed = await in_thread(disputes.object_to, case_ref, body, who, Response())
    except ValidationError as error:
        return refused(Refusal.invalid(error), who, "/app")
    except Problem as error:
        return refused(Refusal.of(error), who, "/app/me/objections")
    return page("objection_filed.html", 201, who=who, filed=filed)


@router.get("/me/objections")
async def my_objections(request: Request) -> HTMLResponse:
    who = member(request)
    found = await in_thread(disputes.my_objections, who)
    return page("objections.html", who=who, objections=found, tab="me")
