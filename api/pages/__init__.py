"""The member's pages: a phone web app in Chinese on the API's own handlers (Jinja2, no build
step), under /app."""

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.pages import claim_pages, jury_pages, member_pages, public_pages
from api.pages.common import Refusal, page
from api.pages.session import CrossSite, LoginNeeded, to_login


def install(app: FastAPI) -> None:
    for module in (public_pages, member_pages, claim_pages, jury_pages):
        app.include_router(module.router)
    app.add_exception_handler(LoginNeeded, _to_login)
    app.add_exception_handler(CrossSite, _cross_site)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/app")


async def _to_login(_: Request, error: Exception) -> RedirectResponse:
    assert isinstance(error, LoginNeeded)
    return to_login(error.back_to)


async def _cross_site(_: Request, error: Exception) -> HTMLResponse:
    refusal = Refusal("请求来自其他网站", "为保护您的账户，只接受从互助页面提交的操作。", 403)
    return page("message.html", 403, error=refusal)
