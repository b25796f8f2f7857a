"""Members' writes by Idempotency-Key: one key, one body, one answer."""

import hashlib
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import bindparam, text
from sqlmodel import Session, select

from domain.models import ApiRequest, UTCDateTime
from domain.services.store import for_update, prepared_insert

# How long a key is remembered: after a day, a key may name a new request (published in the
# API's docs). A resend of the same claim is still one claim, whatever the key: its submission
# id comes from its text.
KEY_LIFETIME = timedelta(hours=24)


class KeyReused(ValueError):
    """The key was used before with another body."""


class InFlight(RuntimeError):
    """A request under this key is being handled right now."""


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def remember(
    session: Session, member_ref: str, key: str, body: bytes, submission_id: str, now: datetime
) -> None:
    """Record the request under its key, or find it recorded: the same body is the same request
    (its answer is given again); another body under the key is refused. Concurrent requests
    with one key meet at the primary key, and the second sees the first once it commits."""
    digest = body_hash(body)
    row = {
        "member_ref": member_ref,
        "key": key,
        "body_sha256": digest,
        "submission_id": submission_id,
        "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    new = session.connection().execute(_insert(dialect), row | {"lock": _lock_name(row)})
    if new.first() is not None:
        return  # the usual case: a new key, one statement
    _hold(session, member_ref, key)  # not inserted: held by a request in flight, or taken
    stored = session.exec(
        for_update(
            select(ApiRequest).where(ApiRequest.member_ref == member_ref, ApiRequest.key == key)
        )
    ).one()
    if stored.created_at < now - KEY_LIFETIME:
        # Expired: the key now names this request.
        stored.body_sha256, stored.submission_id, stored.created_at = digest, submission_id, now
        session.add(stored)
    elif stored.body_sha256 != digest:
        raise KeyReused(
            f"Idempotency-Key {key!r} was used at {stored.created_at.isoformat()} for another "
            "request; use a new key for a new request"
        )


def _lock_name(row: dict) -> str:
    return f"api:{row['member_ref']}:{row['key']}"


@cache
def _insert(dialect: str):
    """The key's row if absent (built once). On PostgreSQL the same statement takes the key's
    advisory lock, so that a second request under a key still being handled is told so at
    once (see _hold) rather than queued behind it; SQLite has one writer, requests never
    overlap."""
    if dialect != "postgresql":
        return prepared_insert(dialect, ApiRequest.__table__, COLUMNS, new_only=True)
    return text(
        f"INSERT INTO apirequest ({', '.join(COLUMNS)}) "
        f"SELECT {', '.join(':' + c for c in COLUMNS)} "
        "WHERE pg_try_advisory_xact_lock(hashtextextended(:lock, 0)) "
        "ON CONFLICT DO NOTHING RETURNING key"
    ).bindparams(bindparam("created_at", type_=UTCDateTime(timezone=True)))


COLUMNS = ("member_ref", "key", "body_sha256", "submission_id", "created_at")


def _hold(session: Session, member_ref: str, key: str) -> None:
    """Raise InFlight when another transaction holds the key's lock (PostgreSQL; taking it
    again in this transaction, which may hold it already, succeeds)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    lock = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))")
    if not session.execute(lock, {"name": f"api:{member_ref}:{key}"}).scalar_one():
        raise InFlight(f"a request under Idempotency-Key {key!r} is still being handled")
