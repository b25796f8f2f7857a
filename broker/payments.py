"""The payment-provider gateway: an async httpx client of batch debits and payouts, every item
carrying a deterministic idempotency key so that a repeated request never moves money twice."""

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cache

import httpx

from broker.http import Unavailable, connected, with_retries
from broker.settings import get_settings

MAX_ITEMS = 5000  # the provider's limit per debit request


@dataclass(frozen=True)
class DebitItem:
    key: str
    account: str
    amount_fen: int


@dataclass(frozen=True)
class DebitResult:
    key: str
    succeeded: bool
    reason: str | None


@dataclass(frozen=True)
class PayoutResult:
    succeeded: bool
    provider_ref: str | None
    reason: str | None


@cache
def _sandbox():
    from sandbox.payments import make_payments_app

    # One provider per process: its memory of idempotency keys must outlive each request.
    return make_payments_app()


def payments_client() -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return connected(get_settings().payments_url, _sandbox)


class Refused(Exception):
    """The provider refused the request itself (4xx): retrying the same request cannot help."""


async def debit(items: list[DebitItem]) -> list[DebitResult]:
    """Debit the items in order (a payer's own charge first, then the family's), in requests of
    at most MAX_ITEMS; results come back in the same order."""
    results: list[DebitResult] = []
    async with payments_client() as http:
        for start in range(0, len(items), MAX_ITEMS):
            results += await _debit_request(http, items[start : start + MAX_ITEMS])
    return results


async def _debit_request(http: httpx.AsyncClient, items: list[DebitItem]) -> list[DebitResult]:
    body = {
        "items": [
            {"idempotency_key": i.key, "account": i.account, "amount_fen": i.amount_fen}
            for i in items
        ]
    }
    data = _json(await with_retries(lambda: http.post("/debits/batch", json=body)))
    try:
        results = [
            DebitResult(r["idempotency_key"], _answered(r["status"]), r.get("reason"))
            for r in data["results"]
        ]
    except (KeyError, TypeError) as error:
        raise Unavailable(f"unreadable debit reply ({type(error).__name__})") from error
    if [r.key for r in results] != [i.key for i in items]:
        raise Unavailable("the debit reply does not answer the items sent")
    return results


async def pay(key: str, account: str, amount_fen: int, purpose: str) -> PayoutResult:
    body = {
        "idempotency_key": key,
        "account": account,
        "amount_fen": amount_fen,
        "purpose": purpose,
    }
    async with payments_client() as http:
        response = await with_retries(
            lambda: http.post("/payouts", json=body, headers={"Idempotency-Key": key})
        )
    if 400 <= response.status_code < 500 and response.status_code != 429:
        # The provider refuses the request itself: record it as refused, for a person.
        return PayoutResult(False, None, f"refused by the provider (HTTP {response.status_code})")
    data = _json(response)
    try:
        return PayoutResult(_answered(data["status"]), data.get("payout_id"), data.get("reason"))
    except (KeyError, TypeError) as error:
        raise Unavailable(f"unreadable payout reply ({type(error).__name__})") from error


async def set_failing_accounts(accounts: list[str]) -> None:
    """Sandbox only: the accounts whose debits the sandbox provider refuses."""
    async with payments_client() as http:
        response = await http.post("/_sandbox/accounts", json={"failing": accounts})
        response.raise_for_status()


def _answered(status: str) -> bool:
    """Succeeded or failed; anything else (pending, processing) is no answer yet: the same key
    is asked again later, never a new one."""
    if status not in ("succeeded", "failed"):
        raise Unavailable(f"the provider has no final answer yet ({status})")
    return status == "succeeded"


def _json(response: httpx.Response) -> dict:
    if 400 <= response.status_code < 500:
        raise Refused(f"{response.request.url.path}: HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError as error:
        # A garbled answer says nothing of what happened: ask again with the same keys.
        raise Unavailable("the provider's reply is not JSON") from error
    if not isinstance(data, dict):
        raise Unavailable("the provider's reply is not a JSON object")
    return data
