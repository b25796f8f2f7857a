"""Who is looking at a page: the platform's token, kept in an HttpOnly cookie once the member
logs in (on the embedded default the login page mints a development token for a member_ref)."""

from urllib.parse import quote, urlsplit

import jwt
from fastapi import Request
from fastapi.responses import RedirectResponse

from api.auth import Caller, NotConfigured, caller_of
from broker.settings import get_settings

COOKIE = "huzhu_token"


class LoginNeeded(Exception):
    """Raised by a page that needs a member; answered with a redirect to the login page."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


class CrossSite(Exception):
    """A form posted from another site: refused, whatever cookie it carries."""


def viewer(request: Request) -> Caller | None:
    """The member whose token the cookie holds, or None (no cookie, expired, not ours)."""
    who = checked(request.cookies.get(COOKIE))
    if who is not None:
        request.state.member_ref = who.member_ref  # for the access log
    return who


def checked(token: str | None) -> Caller | None:
    if not token:
        return None
    try:
        return caller_of(token, get_settings())
    except (jwt.InvalidTokenError, NotConfigured):
        return None


def member(request: Request) -> Caller:
    """The viewer, or off to the login page and back here afterwards (after a form, back to
    the page that showed it: a form's address answers only its POST)."""
    who = viewer(request)
    if who is None:
        if request.method == "GET":
            raise LoginNeeded(request.url.path)
        raise LoginNeeded(safe_next(urlsplit(request.headers.get("referer", "")).path))
    return who


def same_site(request: Request) -> None:
    """Forms only from our own pages. The cookie is SameSite=Strict already; a browser that
    says where a form came from is checked too (Origin, Sec-Fetch-Site)."""
    origin = request.headers.get("origin")
    # "null": a sandboxed frame, or a form sent on through another site's redirect.
    if origin and (origin == "null" or not _ours(origin, request)):
        raise CrossSite(origin)
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CrossSite("cross-site")


def _ours(origin: str, request: Request) -> bool:
    if expected := get_settings().app_origin:
        return origin.rstrip("/") == expected.rstrip("/")  # scheme, host and port
    return urlsplit(origin).netloc == request.url.netloc


def safe_next(path: str | None) -> str:
    """Only our own pages as a place to go back to (never another site's address)."""
    if path and path.startswith("/app") and not path.startswith("//"):
        return path
    return "/app/me"


def to_login(back_to: str) -> RedirectResponse:
    return RedirectResponse(f"/app/login?next={quote(back_to)}", status_code=303)


def logged_in(token: str, back_to: str, request: Request, max_age: int) -> RedirectResponse:
    answer = RedirectResponse(safe_next(back_to), status_code=303)
    answer.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path="/app",
        httponly=True,  # no script reads the token
        samesite="strict",
        secure=request.url.scheme == "https" or not get_settings().embedded,
    )
    return answer


def logged_out() -> RedirectResponse:
    answer = RedirectResponse("/app", status_code=303)
    answer.delete_cookie(COOKIE, path="/app")
    return answer
