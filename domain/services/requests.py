"""Members' writes by Idempotency-Key: one key, one body, one answer."""

import hashlib
from datetime import datetime

from sqlmodel import Session, select

from domain.models import ApiRequest
from domain.services.store import insert_ignoring_duplicates


class KeyReused(ValueError):
    """The key was used before with another body."""


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def remember(
    session: Session, member_ref: str, key: str, body: bytes, submission_id: str, now: datetime
) -> None:
    """Record the request under its key, or find it recorded: the same body is the same request
    (its answer is given again); another body under the key is refused. Concurrent requests
    with one key meet at the primary key, and the second sees the first once it commits."""
    digest = body_hash(body)
    session.connection().execute(
        insert_ignoring_duplicates(session, ApiRequest).values(
            member_ref=member_ref,
            key=key,
            body_sha256=digest,
            submission_id=submission_id,
            created_at=now,
        )
    )
    stored = session.exec(
        select(ApiRequest).where(ApiRequest.member_ref == member_ref, ApiRequest.key == key)
    ).one()
    if stored.body_sha256 != digest:
        raise KeyReused(
            f"Idempotency-Key {key!r} was used at {stored.created_at.isoformat()} for another "
            "request; use a new key for a new request"
        )


def sent_by(session: Session, member_ref: str, submission_id: str) -> bool:
    """Whether the member sent this submission through the API (before intake has matched it
    to a member, this is how they may follow it)."""
    found = select(ApiRequest.key).where(
        ApiRequest.member_ref == member_ref, ApiRequest.submission_id == submission_id
    )
    return session.exec(found).first() is not None
