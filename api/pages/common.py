"""What every page shares: rendering a template into a response, running the API's handlers
off the event loop, and a refusal shown in the member's words."""

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api import members
from api.auth import Caller
from api.pages.render import render
from api.pages.session import same_site
from api.problems import Problem
from api.throttle import write_limit

# The titles members read for the API's refusals; the detail (the rule's own words) follows.
TITLE_ZH = {
    "not-found": "没有找到",
    "no-announcement": "尚无公示",
    "no-wind-down": "本计划没有终止安排",
    "already-objected": "您已对这个案例提出过异议",
    "objection-refused": "异议未被受理",
    "jury-refused": "暂不能申请赔审团",
    "vote-refused": "投票未被受理",
    "already-voted": "您已投过票，第一票有效",
    "consent-required": "需要您同意自动扣款授权",
    "health-declaration-incomplete": "请回答每一道健康告知问题",
    "already-a-member": "您已经是本计划成员",
    "member-ref-taken": "该成员编号已被使用",
    "cannot-leave": "暂不能退出",
    "too-many-requests": "操作太频繁，请稍后再试",
    "invalid-field": "填写有误",
    "forbidden": "没有权限",
    "not-your-member": "只能为本人或您代付的家人申请",
    "submission-id-taken": "该申请编号已被使用，请重新填写申请",
    "invalid-request": "填写有误",
}
UNKNOWN_TITLE = "操作未被受理"
# A page is nobody's to frame, sniff or tell other sites about. Script only from our own files
# (static/verify.js; no inline script, no eval); the style is inline in each page (base.html).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'unsafe-inline'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Cache-Control": "private, no-store",  # one member's own records: no shared cache
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Refusal:
    """A refusal as a page shows it."""

    def __init__(self, title: str, detail: str, status: int = 422) -> None:
        self.title, self.detail, self.status = title, detail, status

    @classmethod
    def of(cls, error: Problem) -> "Refusal":
        return cls(TITLE_ZH.get(error.kind, UNKNOWN_TITLE), error.detail, error.status)

    @classmethod
    def invalid(cls, error: ValidationError) -> "Refusal":
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        return cls("填写有误", f"{field}: {first['msg']}")


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, **context), status_code=status, headers=HEADERS)


def refused(refusal: Refusal, who: Caller | None, back: str) -> HTMLResponse:
    return page("message.html", refusal.status, error=refusal, who=who, back=back)


async def in_thread(work: Callable[..., Any], *args: Any) -> Any:
    """The API's handlers use the database synchronously: never on the event loop."""
    return await run_in_threadpool(work, *args)


class NotMember(Exception):
    """The caller has no membership: answered with the page that invites them to join."""


async def card_of(who: Caller) -> members.MemberCard:
    """The member card (the API's GET /v1/me), or NotMember."""
    try:
        return await in_thread(members.me, who)
    except Problem:
        raise NotMember from None


async def posted(request: Request, who: Caller) -> dict[str, Any]:
    """A form of our own pages, inside the member's write limit (as the API's writes are)."""
    same_site(request)
    write_limit(who)  # a Problem (429), shown as a page by the pages' handler
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}
