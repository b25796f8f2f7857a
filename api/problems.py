"""Errors as RFC 9457 problem+json: a `type` URI per reason, a title, a detail, the fields."""

from typing import Annotated

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://huzhu.example/problems/"
# Ids as the database keeps them: cycles in a 32-bit column, the rest in 64 bits. A larger id
# in a request is a 422, not a driver's overflow.
MAX_CYCLE_ID = 2**31 - 1
MAX_ID = 2**63 - 1
# A claim's submission id in a path, as intake keeps them: no control characters (PostgreSQL
# cannot compare a NUL at all), so `a%00b` is a 422 like any malformed id, never a 500.
SubmissionRef = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457: `type` names the reason (a URI per code), `detail` says what to do."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def _documented(description: str) -> dict:
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {"description": description, "content": {PROBLEM: {"schema": schema}}}


# Declared on every operation, so that clients (and Schemathesis) know each error's shape.
RESPONSES: dict[int | str, dict] = {
    400: _documented("The request cannot be read"),
    401: _documented("No valid bearer token (see WWW-Authenticate)"),
    403: _documented("The caller lacks the staff role this needs"),
    404: _documented("Not found, or not the caller's to see"),
    409: _documented("In conflict with the record's state (already done, in flight)"),
    413: _documented("The request body is too large"),
    422: _documented("The request is not valid, or a rule refuses it (the code in `type`)"),
    429: _documented("Too many writes (see Retry-After)"),
    500: _documented("A bug on our side; nothing was changed twice"),
}


class Problem(Exception):
    """Raised by a handler; answered as problem+json with the given status."""

    def __init__(
        self, status: int, kind: str, title: str, detail: str = "", headers=None, **extra
    ) -> None:
        super().__init__(detail or title)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers, self.extra = headers or {}, extra


def problem(status: int, kind: str, title: str, detail: str = "", headers=None, **extra):
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    return JSONResponse(body | extra, status_code=status, media_type=PROBLEM, headers=headers)


def not_found(what: str) -> Problem:
    """Another member's record is not found either: existence is not leaked."""
    return Problem(404, "not-found", "Not found", f"no {what}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_bug)


async def _on_problem(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Problem)
    return problem(
        error.status, error.kind, error.title, error.detail, error.headers, **error.extra
    )


async def _on_invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
    ]
    return problem(422, "invalid-request", "The request is not valid", "see errors", errors=fields)


async def _on_http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return problem(
        error.status_code, f"http-{error.status_code}", str(error.detail), headers=error.headers
    )


async def _on_bug(_: Request, error: Exception) -> JSONResponse:
    # A 5xx is a bug: the member sees no stack trace, the log keeps it (no personal data in it,
    # as task arguments and records are ids).
    return problem(500, "internal", "Something went wrong on our side", "see the server's log")
