"""The sandbox payment provider: idempotent debits and payouts, duplicates, faults and reset."""

import asyncio
from typing import Any

import httpx
import pytest

from sandbox.faults import Faults
from sandbox.payments import make_payments_app
from tests.sandbox.support import in_process, is_json, live, set_faults


def item(key: str, account: str, amount_fen: int) -> dict[str, Any]:
    return {"idempotency_key": key, "account": account, "amount_fen": amount_fen}


BATCH = {
    "items": [
        item("charge:12:1:1", "M0000001", 742),
        item("charge:12:2:1", "M0000002", 742),  # failing: insufficient funds
        item("charge:12:3:1", "CLOSED0003", 742),
        item("charge:12:4:1", "M0000004", 358),
    ]
}
AID = {
    "idempotency_key": "payout:99",
    "account": "M0000123",
    "amount_fen": 30_000_000,
    "purpose": "aid",
}


async def state(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/_sandbox/state")).json()


async def test_a_batch_answers_each_item_in_order() -> None:
    async with live(make_payments_app(failing_accounts={"M0000002"})) as client:
        response = await client.post("/debits/batch", json=BATCH)
        books = await state(client)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["idempotency_key"] for r in results] == [i["idempotency_key"] for i in BATCH["items"]]
    assert [(r["status"], r["reason"], r["debit_id"]) for r in results] == [
        ("succeeded", None, "d-1"),
        ("failed", "insufficient_funds", None),
        ("failed", "account_closed", None),
        ("succeeded", None, "d-2"),
    ]
    assert not any(r["replayed"] for r in results)
    assert books["debits"] == [
        {
            "debit_id": "d-1",
            "idempotency_key": "charge:12:1:1",
            "account": "M0000001",
            "amount_fen": 742,
        },
        {
            "debit_id": "d-2",
            "idempotency_key": "charge:12:4:1",
            "account": "M0000004",
            "amount_fen": 358,
        },
    ]
    assert books["totals"] == {"debited_fen": 1100, "paid_out_fen": 0, "debits": 2, "payouts": 0}


async def test_the_same_batch_twice_is_replayed_and_moves_no_money() -> None:
    async with live(make_payments_app(failing_accounts={"M0000002"})) as client:
        first = (await client.post("/debits/batch", json=BATCH)).json()["results"]
        # Even after the account recovers, its failed key keeps its first answer...
        await client.post("/_sandbox/accounts", json={"failing": []})
        second = (await client.post("/debits/batch", json=BATCH)).json()["results"]
        # ...and a new attempt needs a new key.
        retry = await client.post(
            "/debits/batch", json={"items": [item("charge:12:2:2", "M0000002", 742)]}
        )
        books = await state(client)
    assert all(r["replayed"] for r in second)
    assert [{**r, "replayed": False} for r in second] == first
    assert retry.json()["results"][0]["status"] == "succeeded"
    assert books["totals"] == {"debited_fen": 1842, "paid_out_fen": 0, "debits": 3, "payouts": 0}


async def test_the_same_payout_twice_pays_once() -> None:
    async with live(make_payments_app()) as client:
        first = await client.post("/payouts", json=AID)
        second = await client.post("/payouts", json=AID)
        books = await state(client)
    assert first.status_code == second.status_code == 200
    assert first.json() == {
        "payout_id": "p-1",
        "status": "succeeded",
        "reason": None,
        "replayed": False,
    }
    assert second.json() == {**first.json(), "replayed": True}
    assert books["payouts"] == [{"payout_id": "p-1", **AID}]
    assert books["totals"]["paid_out_fen"] == 30_000_000


@pytest.mark.parametrize(
    "change", [{"amount_fen": 10_000_000}, {"account": "M0000124"}, {"purpose": "refund"}]
)
async def test_a_payout_key_reused_for_another_payout_is_a_409(change: dict) -> None:
    async with live(make_payments_app()) as client:
        await client.post("/payouts", json=AID)
        response = await client.post("/payouts", json={**AID, **change})
        books = await state(client)
    assert response.status_code == 409
    assert response.json() == {"error": "idempotency key reused with different parameters"}
    assert books["totals"]["payouts"] == 1


async def test_a_payout_to_a_failing_account_fails_and_is_remembered() -> None:
    async with in_process(make_payments_app(failing_accounts={"M0000123"})) as client:
        failed = await client.post("/payouts", json=AID)
        await client.post("/_sandbox/accounts", json={"failing": []})
        again = await client.post("/payouts", json=AID)
        books = await state(client)
    assert failed.json() == {
        "payout_id": None,
        "status": "failed",
        "reason": "account_frozen",
        "replayed": False,
    }
    assert again.json() == {**failed.json(), "replayed": True}
    assert books["payouts"] == []


async def test_concurrent_duplicates_of_one_payout_pay_once() -> None:
    async with live(make_payments_app()) as client:
        replies = await asyncio.gather(*(client.post("/payouts", json=AID) for _ in range(20)))
        books = await state(client)
    assert {r.json()["payout_id"] for r in replies} == {"p-1"}
    assert sum(not r.json()["replayed"] for r in replies) == 1
    assert books["totals"]["payouts"] == 1


async def test_duplicate_replies_answer_the_replay_and_move_money_once() -> None:
    async with live(make_payments_app(faults=Faults(duplicate_replies=True))) as client:
        batch = await client.post("/debits/batch", json={"items": BATCH["items"][:1]})
        payout = await client.post("/payouts", json=AID)
        books = await state(client)
    assert batch.json()["results"][0] == {
        "idempotency_key": "charge:12:1:1",
        "status": "succeeded",
        "reason": None,
        "debit_id": "d-1",
        "replayed": True,
    }
    assert payout.json() == {
        "payout_id": "p-1",
        "status": "succeeded",
        "reason": None,
        "replayed": True,
    }
    assert books["totals"] == {
        "debited_fen": 742,
        "paid_out_fen": 30_000_000,
        "debits": 1,
        "payouts": 1,
    }


GOOD = item("charge:1:1:1", "M0000001", 100)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"items": []}',
        b'{"items": {}}',
        {"items": [GOOD, {**GOOD, "idempotency_key": "charge:1:2:1", "amount_fen": 0}]},
        {"items": [GOOD, {**GOOD, "idempotency_key": "charge:1:2:1", "amount_fen": 7.5}]},
        {"items": [GOOD, {**GOOD, "idempotency_key": "charge:1:2:1", "amount_fen": "742"}]},
        {"items": [GOOD, {**GOOD, "idempotency_key": "charge:1:2:1", "amount_fen": True}]},
        {"items": [GOOD, {"idempotency_key": "charge:1:2:1", "amount_fen": 5}]},
        {"items": [GOOD, {**GOOD, "idempotency_key": ""}]},
        {"items": [GOOD, GOOD]},  # the same key twice in one batch
        {"items": [item(f"charge:1:{n}:1", "M0000001", 1) for n in range(5001)]},
    ],
)
async def test_a_malformed_batch_is_a_422_and_nothing_moves(body: Any) -> None:
    async with in_process(make_payments_app()) as client:
        if isinstance(body, bytes):
            response = await client.post("/debits/batch", content=body)
        else:
            response = await client.post("/debits/batch", json=body)
        books = await state(client)
        # The good item in a refused batch was not remembered either: it still debits later.
        later = await client.post("/debits/batch", json={"items": [GOOD]})
    assert response.status_code == 422
    assert isinstance(response.json()["error"], str)
    assert books["totals"]["debits"] == 0
    assert later.json()["results"][0]["replayed"] is False


async def test_a_full_batch_of_5000_is_accepted() -> None:
    async with in_process(make_payments_app()) as client:
        items = [item(f"charge:1:{n}:1", f"M{n:07d}", 1) for n in range(5000)]
        response = await client.post("/debits/batch", json={"items": items})
        books = await state(client)
    assert len(response.json()["results"]) == 5000
    assert books["totals"]["debited_fen"] == 5000


@pytest.mark.parametrize(
    "body",
    [
        {**AID, "purpose": "gift"},
        {**AID, "amount_fen": -1},
        {"account": "M1", "amount_fen": 1, "purpose": "aid"},
    ],
)
async def test_a_malformed_payout_is_a_422(body: dict) -> None:
    async with in_process(make_payments_app()) as client:
        response = await client.post("/payouts", json=body)
    assert response.status_code == 422


async def test_reset_forgets_money_keys_and_faults() -> None:
    app = make_payments_app(failing_accounts={"M0000002"})
    async with live(app) as client:
        await client.post("/debits/batch", json=BATCH)
        await client.post("/payouts", json=AID)
        await client.post("/_sandbox/accounts", json={"failing": ["M0000001"]})
        await set_faults(client, latency_ms=50, fail_next=4)
        reset = await client.post("/_sandbox/reset")
        books = await state(client)
        faults = (await client.get("/_sandbox/faults")).json()
        accounts = (await client.get("/_sandbox/accounts")).json()
        fresh = await client.post("/payouts", json=AID)
    assert reset.status_code == 200
    assert books["debits"] == books["payouts"] == []
    assert books["totals"] == {"debited_fen": 0, "paid_out_fen": 0, "debits": 0, "payouts": 0}
    assert faults == Faults().as_dict()
    assert accounts == {"failing": ["M0000002"]}  # back to what the service started with
    assert fresh.json() == {
        "payout_id": "p-1",
        "status": "succeeded",
        "reason": None,
        "replayed": False,
    }


async def test_fail_next_refuses_the_request_without_processing_it() -> None:
    async with live(make_payments_app(faults=Faults(fail_next=1))) as client:
        refused = await client.post("/payouts", json=AID)
        books = await state(client)
        retried = await client.post("/payouts", json=AID)
    assert refused.status_code == 503
    assert "error" in refused.json()
    assert books["totals"]["payouts"] == 0
    assert retried.json()["replayed"] is False


async def test_a_timed_out_payout_was_made_and_its_retry_is_a_replay() -> None:
    async with live(make_payments_app(faults=Faults(timeout_next=1))) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/payouts", json=AID, timeout=0.5)
        retried = await client.post("/payouts", json=AID)
        books = await state(client)
    assert retried.json() == {
        "payout_id": "p-1",
        "status": "succeeded",
        "reason": None,
        "replayed": True,
    }
    assert books["totals"]["payouts"] == 1


async def test_a_garbled_batch_reply_was_processed_and_its_retry_is_a_replay() -> None:
    async with live(make_payments_app(faults=Faults(malformed_next=1))) as client:
        garbled = await client.post("/debits/batch", json=BATCH)
        retried = await client.post("/debits/batch", json=BATCH)
        books = await state(client)
    assert garbled.status_code == 200
    assert not is_json(garbled.text)
    assert all(r["replayed"] for r in retried.json()["results"])
    assert books["totals"]["debits"] == 3


async def test_latency_and_seeded_5xx_apply_to_payments_too() -> None:
    async with live(
        make_payments_app(faults=Faults(status_5xx_rate=1.0, latency_ms=100))
    ) as client:
        refused = await client.post("/payouts", json=AID)
        await set_faults(client, status_5xx_rate=0.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        accepted = await client.post("/payouts", json=AID)
        elapsed = loop.time() - started
    assert refused.status_code == 503
    assert accepted.json()["replayed"] is False
    assert elapsed >= 0.1
