"""Fault switches shared by the sandbox services, and the middleware that applies them."""

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MALFORMED_BODY = b"{not json"

# Faults never touch these, so a test can always read and repair a misbehaving service.
EXEMPT_PREFIX = "/_sandbox/"
EXEMPT_PATHS = frozenset({"/health"})

COUNTERS = ("latency_ms", "fail_next", "timeout_next", "malformed_next")

FAIL = "fail"
TIMEOUT = "timeout"
MALFORMED = "malformed"


@dataclass
class Faults:
    latency_ms: int = 0
    fail_next: int = 0
    status_5xx_rate: float = 0.0
    timeout_next: int = 0
    hang_seconds: float = 30.0
    malformed_next: int = 0
    duplicate_replies: bool = False
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            setattr(self, name, _checked(name, value))
        self.rng = random.Random(self.seed)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def update(self, changes: dict[str, Any]) -> None:
        """Set some switches, all checked before any is applied: a bad body changes nothing."""
        unknown = sorted(set(changes) - set(self.as_dict()))
        if unknown:
            raise ValueError(f"unknown fault switch(es): {', '.join(unknown)}")
        checked = {name: _checked(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)
        if "seed" in checked:
            self.rng = random.Random(self.seed)

    def reset(self) -> None:
        self.update({f.name: f.default for f in fields(self) if f.init})

    def decide(self) -> str | None:
        """The fault this request meets, if any. Called at arrival, before any await, so counters
        count down in arrival order even when requests overlap. One fault per request."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return FAIL
        if self.status_5xx_rate > 0 and self.rng.random() < self.status_5xx_rate:
            return FAIL
        if self.timeout_next > 0:
            self.timeout_next -= 1
            return TIMEOUT
        if self.malformed_next > 0:
            self.malformed_next -= 1
            return MALFORMED
        return None


def _checked(name: str, value: Any) -> Any:
    # bool is an int in Python; a JSON true must not pass for a count.
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in COUNTERS:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer")
        return value
    if name == "status_5xx_rate":
        if not is_number or not 0 <= value <= 1:
            raise ValueError("status_5xx_rate must be a number from 0 to 1")
        return float(value)
    if name == "hang_seconds":
        if not is_number or value < 0:
            raise ValueError("hang_seconds must be a non-negative number")
        return float(value)
    if name == "duplicate_replies":
        if not isinstance(value, bool):
            raise ValueError("duplicate_replies must be true or false")
        return value
    if name == "seed":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError("seed must be an integer or null")
        return value
    raise ValueError(f"unknown fault switch: {name}")


def unavailable_json() -> Response:
    return JSONResponse({"error": "service unavailable (sandbox fault)"}, status_code=503)


class FaultMiddleware:
    """Applies the switches to every business request; /_sandbox/* and /health pass untouched."""

    def __init__(
        self,
        app: ASGIApp,
        faults: Faults,
        unavailable: Callable[[], Response] = unavailable_json,
    ) -> None:
        self.app = app
        self.faults = faults
        self.unavailable = unavailable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIX):
            await self.app(scope, receive, send)
            return
        fault = self.faults.decide()
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if fault == FAIL:
            await self.unavailable()(scope, receive, send)
            return
        if fault is None:
            await self.app(scope, receive, send)
            return
        # The work is still done; only the reply goes wrong, as when a network drops or garbles an
        # answer. That is the case idempotency keys exist for: the retry must be a replay.
        reply: list[Message] = []

        async def keep(message: Message) -> None:
            reply.append(message)

        await self.app(scope, receive, keep)
        if fault == MALFORMED:
            garbled = Response(MALFORMED_BODY, status_code=200, media_type="application/json")
            await garbled(scope, receive, send)
            return
        if await self._client_gave_up(receive):
            return  # nobody is listening any more
        for message in reply:
            await send(message)

    async def _client_gave_up(self, receive: Receive) -> bool:
        """Hang for hang_seconds, ending early when the client hangs up (its timeout fired), so a
        hung request never holds the server open after the test has moved on."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(disconnected(), self.faults.hang_seconds)
        except TimeoutError:
            return False
        return True


def sandbox_routes(faults: Faults, reset_state: Callable[[], None]) -> list[Route]:
    """The routes every sandbox service shares: health, fault switches, reset."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def read_faults(request: Request) -> Response:
        return JSONResponse(faults.as_dict())

    async def set_faults(request: Request) -> Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object of fault switches")
            faults.update(changes)
        except ValueError as error:  # json.JSONDecodeError is a ValueError too
            return JSONResponse({"error": str(error)}, status_code=422)
        return JSONResponse(faults.as_dict())

    async def reset(request: Request) -> Response:
        faults.reset()
        reset_state()
        return JSONResponse({"status": "reset", "faults": faults.as_dict()})

    return [
        Route("/health", health, methods=["GET"]),
        Route("/_sandbox/faults", read_faults, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]
