"""A sandbox payment provider: idempotent batch debits and payouts, in integer fen, in memory."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import FaultMiddleware, Faults, sandbox_routes

MAX_BATCH = 5000
PURPOSES = ("aid", "refund")
CLOSED_PREFIX = "CLOSED"


class Invalid(ValueError):
    """A request the provider refuses whole (422): nothing in it is processed."""


class Conflict(ValueError):
    """An idempotency key reused for a different request (409)."""


@dataclass
class Ledger:
    """The provider's books. Every key is remembered with its first answer until reset, so a
    repeated request is answered from memory and never moves money twice."""

    failing_accounts: set[str] = field(default_factory=set)
    debits: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> stored result
    payouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> request + result
    moved_debits: list[dict[str, Any]] = field(default_factory=list)
    moved_payouts: list[dict[str, Any]] = field(default_factory=list)

    def refusal(self, account: str, frozen: str) -> str | None:
        if account in self.failing_accounts:
            return frozen
        if account.startswith(CLOSED_PREFIX):
            return "account_closed"
        return None

    def debit_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = []
        for item in items:
            key = item["idempotency_key"]
            if key in self.debits:
                results.append({**self.debits[key], "replayed": True})
                continue
            reason = self.refusal(item["account"], frozen="insufficient_funds")
            debit_id = None
            if reason is None:
                debit_id = f"d-{len(self.moved_debits) + 1}"
                self.moved_debits.append(
                    {
                        "debit_id": debit_id,
                        "idempotency_key": key,
                        "account": item["account"],
                        "amount_fen": item["amount_fen"],
                    }
                )
            result = {
                "idempotency_key": key,
                "status": "failed" if reason else "succeeded",
                "reason": reason,
                "debit_id": debit_id,
                "replayed": False,
            }
            self.debits[key] = result
            results.append(dict(result))
        return results

    def payout(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request["idempotency_key"]
        asked = {name: request[name] for name in ("account", "amount_fen", "purpose")}
        if key in self.payouts:
            stored = self.payouts[key]
            if stored["request"] != asked:
                raise Conflict("idempotency key reused with different parameters")
            return {**stored["result"], "replayed": True}
        reason = self.refusal(request["account"], frozen="account_frozen")
        payout_id = None
        if reason is None:
            payout_id = f"p-{len(self.moved_payouts) + 1}"
            self.moved_payouts.append({"payout_id": payout_id, "idempotency_key": key, **asked})
        result = {
            "payout_id": payout_id,
            "status": "failed" if reason else "succeeded",
            "reason": reason,
            "replayed": False,
        }
        self.payouts[key] = {"request": asked, "result": result}
        return dict(result)

    def state(self) -> dict[str, Any]:
        return {
            "debits": list(self.moved_debits),
            "payouts": list(self.moved_payouts),
            "totals": {
                "debited_fen": sum(d["amount_fen"] for d in self.moved_debits),
                "paid_out_fen": sum(p["amount_fen"] for p in self.moved_payouts),
                "debits": len(self.moved_debits),
                "payouts": len(self.moved_payouts),
            },
        }

    def clear(self) -> None:
        self.debits.clear()
        self.payouts.clear()
        self.moved_debits.clear()
        self.moved_payouts.clear()


def _text(body: dict[str, Any], name: str, where: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{where}{name} must be a non-empty string")
    return value


def _fen(body: dict[str, Any], name: str, where: str) -> int:
    value = body.get(name)
    # Money is whole fen: no floats, no strings, no JSON true sneaking in as 1.
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise Invalid(f"{where}{name} must be a positive integer (fen)")
    return value


def parse_batch(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise Invalid('the body must be an object with an "items" list')
    items = body["items"]
    if not 1 <= len(items) <= MAX_BATCH:
        raise Invalid(f"a batch holds 1 to {MAX_BATCH} items, not {len(items)}")
    parsed, seen = [], set()
    for index, item in enumerate(items):
        where = f"items[{index}]."
        if not isinstance(item, dict):
            raise Invalid(f"items[{index}] must be an object")
        key = _text(item, "idempotency_key", where)
        if key in seen:
            raise Invalid(f"idempotency_key {key!r} appears twice in the batch")
        seen.add(key)
        parsed.append(
            {
                "idempotency_key": key,
                "account": _text(item, "account", where),
                "amount_fen": _fen(item, "amount_fen", where),
            }
        )
    return parsed


def parse_payout(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    purpose = body.get("purpose")
    if purpose not in PURPOSES:
        raise Invalid(f"purpose must be one of {', '.join(PURPOSES)}")
    return {
        "idempotency_key": _text(body, "idempotency_key", ""),
        "account": _text(body, "account", ""),
        "amount_fen": _fen(body, "amount_fen", ""),
        "purpose": purpose,
    }


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as error:
        raise Invalid(f"the body is not JSON: {error}") from error


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def make_payments_app(
    faults: Faults | None = None, failing_accounts: set[str] | None = None
) -> Starlette:
    faults = faults if faults is not None else Faults()
    initial_failing = set(failing_accounts or ())
    ledger = Ledger(failing_accounts=set(initial_failing))
    lock = asyncio.Lock()

    def times(once: Callable[[], Any]) -> Any:
        """Apply a request once, or, under duplicate_replies, twice as a duplicated network
        delivery would, answering with the second (replayed) reply."""
        reply = once()
        return once() if faults.duplicate_replies else reply

    async def debit_batch(request: Request) -> Response:
        try:
            items = parse_batch(await _json_body(request))
        except Invalid as error:
            return _error(422, str(error))
        async with lock:
            results = times(lambda: ledger.debit_batch(items))
        return JSONResponse({"results": results})

    async def payout(request: Request) -> Response:
        try:
            asked = parse_payout(await _json_body(request))
            async with lock:
                result = times(lambda: ledger.payout(asked))
        except Invalid as error:
            return _error(422, str(error))
        except Conflict as error:
            return _error(409, str(error))
        return JSONResponse(result)

    async def read_accounts(request: Request) -> Response:
        return JSONResponse({"failing": sorted(ledger.failing_accounts)})

    async def set_accounts(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except Invalid as error:
            return _error(422, str(error))
        failing = body.get("failing") if isinstance(body, dict) else None
        if not isinstance(failing, list) or not all(isinstance(a, str) for a in failing):
            return _error(422, '"failing" must be a list of account strings')
        async with lock:
            ledger.failing_accounts = set(failing)
        return JSONResponse({"failing": sorted(ledger.failing_accounts)})

    async def read_state(request: Request) -> Response:
        async with lock:
            return JSONResponse(ledger.state())

    def reset_state() -> None:
        # Synchronous and await-free, so no request can interleave with it on the one event loop.
        ledger.clear()
        ledger.failing_accounts = set(initial_failing)

    routes = [
        *sandbox_routes(faults, reset_state=reset_state),
        Route("/_sandbox/accounts", read_accounts, methods=["GET"]),
        Route("/_sandbox/accounts", set_accounts, methods=["POST"]),
        Route("/_sandbox/state", read_state, methods=["GET"]),
        Route("/debits/batch", debit_batch, methods=["POST"]),
        Route("/payouts", payout, methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(FaultMiddleware, faults=faults)])
    app.state.faults = faults
    app.state.ledger = ledger
    return app
