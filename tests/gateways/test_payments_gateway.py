"""The payments gateway over real HTTP: batches, payouts, faults, and money moving once."""

import pytest

from broker.http import Unavailable
from broker.payments import DebitItem, debit, pay
from tests.gateways.conftest import faults, provider_state

BATCH = [
    DebitItem("charge:1:1:1", "PAYER", 742),
    DebitItem("charge:1:2:1", "PAYER", 742),  # the payer's family, same account
    DebitItem("charge:1:3:1", "BROKE", 742),
    DebitItem("charge:1:4:1", "OTHER", 742),
]


async def test_a_batch_with_mixed_results_answers_each_item_in_order(
    gateway_settings, payments_url
):
    results = await debit(BATCH)
    assert [(r.key, r.succeeded, r.reason) for r in results] == [
        ("charge:1:1:1", True, None),
        ("charge:1:2:1", True, None),
        ("charge:1:3:1", False, "insufficient_funds"),
        ("charge:1:4:1", True, None),
    ]
    assert (await provider_state(payments_url))["totals"]["debited_fen"] == 3 * 742


async def test_the_same_batch_sent_again_moves_no_money(gateway_settings, payments_url):
    first = await debit(BATCH)
    assert await debit(BATCH) == first
    assert (await provider_state(payments_url))["totals"]["debits"] == 3


async def test_a_5xx_then_success_debits_once(gateway_settings, payments_url):
    await faults(payments_url, fail_next=2)
    assert [r.succeeded for r in await debit(BATCH[:1])] == [True]
    assert (await provider_state(payments_url))["totals"]["debits"] == 1


async def test_a_garbled_reply_is_asked_again_with_the_same_keys(gateway_settings, payments_url):
    await faults(payments_url, malformed_next=1)
    with pytest.raises(Unavailable, match="not JSON"):
        await debit(BATCH[:1])
    # The provider did the work; the task's retry sends the same key and is told so.
    assert [r.succeeded for r in await debit(BATCH[:1])] == [True]
    assert (await provider_state(payments_url))["totals"]["debits"] == 1


async def test_the_same_payout_sent_twice_pays_once(gateway_settings, payments_url):
    first = await pay("aid:7", "PATIENT", 30_000_000, "aid")
    second = await pay("aid:7", "PATIENT", 30_000_000, "aid")
    assert first.succeeded and second == first
    state = await provider_state(payments_url)
    assert (state["totals"]["payouts"], state["totals"]["paid_out_fen"]) == (1, 30_000_000)


async def test_a_payout_whose_reply_timed_out_is_paid_once_on_retry(gateway_settings, payments_url):
    await faults(payments_url, timeout_next=1, hang_seconds=5)
    result = await pay("aid:8", "PATIENT", 10_000_000, "aid")
    assert result.succeeded
    assert (await provider_state(payments_url))["totals"]["payouts"] == 1


async def test_duplicate_replies_never_pay_twice(gateway_settings, payments_url):
    await faults(payments_url, duplicate_replies=True)
    assert (await pay("aid:9", "PATIENT", 10_000_000, "aid")).succeeded
    assert [r.succeeded for r in await debit(BATCH[:2])] == [True, True]
    totals = (await provider_state(payments_url))["totals"]
    assert (totals["payouts"], totals["debits"]) == (1, 2)


async def test_a_frozen_account_is_a_refused_payout(gateway_settings):
    result = await pay("aid:10", "BROKE", 10_000_000, "aid")
    assert (result.succeeded, result.reason) == (False, "account_frozen")
