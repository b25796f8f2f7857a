"""Errors as RFC 9457 problem+json: a `type` URI per reason, a title, a detail, the fields."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://huzhu.example/problems/"


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
    return problem(500, "internal", "Something went wrong on our side", "it has been logged")
