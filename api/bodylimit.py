"""A cap on request bodies: a claim or an enrolment is a few hundred bytes, so a body of
megabytes is refused (413, problem+json) before it is read, never stored as a claim's text.

Starlette's own limit (FastAPI's `max_body_size`) answers a declared length over it in plain
text, whatever the app's error handlers: this one keeps every error a problem."""

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.pages.common import Refusal, page
from api.problems import problem

MAX_BODY_BYTES = 64 * 1024
TOO_LARGE = f"send at most {MAX_BODY_BYTES} bytes (a claim or an enrolment is far less)"


def _refusal(path: str) -> Response:
    if path.startswith("/app"):  # a member's page answers with a page
        return page("message.html", 413, error=Refusal("提交的内容太大", TOO_LARGE, 413))
    return problem(413, "body-too-large", "The request body is too large", TOO_LARGE)


class BodyLimit:
    """Refuses a body over MAX_BODY_BYTES: by its Content-Length before reading it, or, sent
    in chunks, as soon as what was read passes the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length") if scope["type"] == "http" else None
        if declared is not None and int(declared) > MAX_BODY_BYTES:  # h11 checked it is a number
            await _refusal(scope["path"])(scope, receive, send)
            return
        read = 0

        async def limited() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > MAX_BODY_BYTES:
                # Raised while FastAPI reads the body: its error handlers answer it.
                raise HTTPException(413, TOO_LARGE)
            return message

        await self.app(scope, limited, send)
