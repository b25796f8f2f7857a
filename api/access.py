"""Who may see and do what: the caller from their bearer token, their own memberships and those
they pay for, and the staff roles."""

from collections.abc import Callable
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.auth import Caller, NotConfigured, caller_of
from api.problems import Problem
from broker.settings import get_settings
from domain.models import Member

bearer = HTTPBearer(auto_error=False, description="A token the platform signed for the member.")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None:
        raise _unauthenticated("A bearer token is needed", "log in through the app")
    try:
        who = caller_of(credentials.credentials, get_settings())
    except (jwt.InvalidTokenError, NotConfigured) as error:
        raise _unauthenticated("The token is not valid", str(error)) from None
    request.state.member_ref = who.member_ref  # for the access log
    return who


def _unauthenticated(title: str, detail: str) -> Problem:
    # RFC 6750 §3: a 401 names the scheme (and, for a bad token, the error).
    challenge = 'Bearer realm="huzhu"' + (', error="invalid_token"' if "valid" in title else "")
    return Problem(401, "unauthenticated", title, detail, {"WWW-Authenticate": challenge})


Member_ = Annotated[Caller, Depends(caller)]


def with_role(*roles: str) -> Callable[[Caller], Caller]:
    """A dependency that lets staff with any of `roles` through and answers others 403."""

    def check(who: Member_) -> Caller:
        if not who.roles & set(roles):
            needs = " or ".join(roles)
            raise Problem(403, "forbidden", f"This needs the {needs} role", "ask an operator")
        return who

    return check


def may_read(session: Session, who: Caller, member_id: int | None) -> bool:
    """The member themselves, and the member who pays for them."""
    if member_id is None:
        return False
    member = session.get(Member, member_id)
    if member is None:
        return False
    if member.member_ref == who.member_ref:
        return True
    payer = session.get(Member, member.payer_id) if member.payer_id else None
    return payer is not None and payer.member_ref == who.member_ref
