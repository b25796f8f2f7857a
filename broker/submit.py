"""The producer: store a submission, then send its claim chain (ids only in the messages)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from celery import chain
from sqlmodel import Session

from broker.app import app
from broker.database import engine
from domain.db import transaction
from domain.services.claims import record_submission


@dataclass(frozen=True)
class Submitted:
    claim_id: int
    created: bool


CLAIM_STEPS = ("accept_claim", "review_claim", "announce_claim")


def claim_chain(claim_id: int, start: str = "accept_claim") -> chain:
    """accept_claim | review_claim | announce_claim (or its tail from `start`), each link
    taking only the claim id.

    Every link runs whatever the previous one decided and does nothing unless the claim is in
    the state it expects, so the chain never stops half-way on a rejected claim.
    """
    steps = CLAIM_STEPS[CLAIM_STEPS.index(start) :]
    return chain(
        *(app.signature(f"huzhu.{step}", args=(claim_id,), immutable=True) for step in steps)
    )


def submit_claim(
    raw: str, now: datetime | None = None, also: Callable[[Session, Submitted], None] | None = None
) -> Submitted:
    """Record one submission (its raw text, whatever it holds) and enqueue its chain once.

    The row is committed before the message is sent, so a worker always finds it; if the
    send is lost, the periodic sweep sends the chain again. `also` runs in the same
    transaction once the row is there, and may refuse it by raising (the API's checks and its
    idempotency record).
    """
    with transaction(engine()) as session:
        submitted = Submitted(*record_submission(session, raw, now or datetime.now(UTC)))
        if also is not None:
            also(session, submitted)
    if submitted.created:
        claim_chain(submitted.claim_id).apply_async()
    return submitted


def send_step(name: str, *args: object) -> None:
    """Send one task by name (used by the CLI and the sweep to resume work)."""
    app.send_task(f"huzhu.{name}", args=args)
