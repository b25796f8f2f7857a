"""The member's pages: a phone web app in Chinese on the API's own handlers (Jinja2, no build
step), under /app."""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from api.pages import claim_pages, jury_pages, member_pages, proof_pages, public_pages
from api.pages.common import NotMember, Refusal, page
from api.pages.session import CrossSite, LoginNeeded, to_login, viewer
from api.problems import Problem

Handler = Callable[[Request, Exception], Awaitable[Response]]
# What a page says for the framework's own refusals (no such page, a method it has not).
HTTP_ZH = {
    400: "无法读取提交的内容",
    404: "没有这个页面",
    405: "不支持这个操作",
    413: "提交的内容太大",
}


def install(app: FastAPI) -> None:
    """The pages' routes, and their errors answered as pages (the API's stay problem+json):
    call after the API's handlers are installed."""
    for module in (public_pages, member_pages, claim_pages, jury_pages, proof_pages):
        app.include_router(module.router)
    app.add_exception_handler(LoginNeeded, _to_login)
    app.add_exception_handler(CrossSite, _cross_site)
    app.add_exception_handler(NotMember, _not_member)
    for kind in (Problem, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, _on_pages(app.exception_handlers[kind]))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/app")


def _on_pages(api_handler: Handler) -> Handler:
    async def handle(request: Request, error: Exception) -> Response:
        if not request.url.path.startswith("/app"):
            return await api_handler(request, error)
        refusal = _refusal(error)
        return page("message.html", refusal.status, error=refusal, who=viewer(request))

    return handle


def _refusal(error: Exception) -> Refusal:
    if isinstance(error, Problem):
        refusal = Refusal.of(error)
    elif isinstance(error, HTTPException):
        title = HTTP_ZH.get(error.status_code, "无法完成")
        refusal = Refusal(title, "请从互助页面重新进入。", error.status_code)
    elif isinstance(error, RequestValidationError):
        refusal = Refusal("地址有误", "请从互助页面重新进入。", 422)
    else:  # a bug: the member sees no trace, the log keeps it
        refusal = Refusal("系统出错了", "请稍后再试；您的操作没有被重复执行。", 500)
    return refusal


async def _to_login(_: Request, error: Exception) -> RedirectResponse:
    assert isinstance(error, LoginNeeded)
    return to_login(error.back_to)


async def _cross_site(request: Request, _: Exception) -> HTMLResponse:
    refusal = Refusal("请求来自其他网站", "为保护您的账户，只接受从互助页面提交的操作。", 403)
    return page("message.html", 403, error=refusal, who=viewer(request))


async def _not_member(request: Request, _: Exception) -> HTMLResponse:
    return page("not_member.html", 404, who=viewer(request))
