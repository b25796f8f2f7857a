"""A cap on request bodies: a claim or an enrolment is a few hundred bytes, so a body of
megabytes is refused (413, problem+json) before it is read, never stored as a claim's text.
An investigator's evidence file (a scan, a photograph) may be up to 20 MiB.

Starlette's own limit (FastAPI's `max_body_size`) answers a declared length over it in plain
text, whatever the app's error handlers: this one keeps every error a problem."""

import re

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.pages.common import Refusal, page
from api.problems import problem
from domain.investigations import EVIDENCE_MAX_BYTES

MAX_BODY_BYTES = 64 * 1024
TOO_LARGE = f"send at most {MAX_BODY_BYTES} bytes (a claim or an enrolment is far less)"
EVIDENCE_UPLOAD = re.compile(r"/v1/investigations/[0-9]+/evidence")


def limit_for(path: str) -> tuple[int, str]:
    if EVIDENCE_UPLOAD.fullmatch(path):
        return EVIDENCE_MAX_BYTES, f"an evidence file is at most {EVIDENCE_MAX_BYTES} bytes"
    return MAX_BODY_BYTES, TOO_LARGE


def _refusal(path: str, why: str) -> Response:
    if path.startswith("/app"):  # a member's page answers with a page
        return page("message.html", 413, error=Refusal("提交的内容太大", why, 413))
    return problem(413, "body-too-large", "The request body is too large", why)


class BodyLimit:
    """Refuses a body over its path's limit (limit_for): by its Content-Length before reading
    it, or, sent in chunks, as soon as what was read passes the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        most, why = limit_for(scope["path"])
        if declared is not None and int(declared) > most:  # h11 checked it is a number
            await _refusal(scope["path"], why)(scope, receive, send)
            return
        read = 0

        async def limited() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > most:
                # Raised while FastAPI reads the body: its error handlers answer it.
                raise HTTPException(413, why)
            return message

        await self.app(scope, limited, send)
