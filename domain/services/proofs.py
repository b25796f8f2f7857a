"""The proofs of a close in the database: each chunk's subtree as it is charged, the cycle's roots
and its entry in the log at finalise, a member's proof on request, and their recomputation by the
audit. Secrets are passed in (ProofKeys); nothing here reads the settings."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, col, func, insert, select

from domain import proofs, sumtree, translog
from domain.claims import State
from domain.models import (
    Charge,
    ChargeChunk,
    Claim,
    CycleStatus,
    LogEntry,
    LogHead,
    Member,
    ProofBucket,
    SharingCycle,
)
from domain.services.store import lock_log

CASE_STATES = (State.SETTLED, State.PAID)
# Buckets read at once when building or auditing a chunk (a SQLite chunk is a million members).
SLAB_BUCKETS = 64


@dataclass(frozen=True)
class ProofKeys:
    secret: bytes = field(repr=False)  # members' salts are derived from it
    signer: Ed25519PrivateKey = field(repr=False)  # signs the log's tree heads


class NoProof(LookupError):
    """There is no proof to give: the cycle is not closed, or did not charge this member."""


def chunk_span(cycle: SharingCycle, chunk_no: int) -> tuple[int, int]:
    """The member ids a charging chunk covers."""
    low = cycle.first_member_id + chunk_no * cycle.chunk_size
    return low, min(low + cycle.chunk_size - 1, cycle.last_member_id)


def charged_rows(session: Session, cycle_id: int, low: int, high: int) -> Iterator[tuple]:
    """(member id, member_ref, amount) of the cycle's charges in an id range, in id order, a
    slab of buckets at a time (memory stays flat whatever the chunk's size): the charges and the
    members of the slab in two range scans, matched here."""
    connection = session.connection()
    slab = sumtree.BUCKET_IDS * SLAB_BUCKETS
    start = low
    while start <= high:
        end = min(high, (start // slab + 1) * slab - 1)
        refs = dict(
            _rows(
                connection,
                select(Member.id, Member.member_ref).where(col(Member.id).between(start, end)),
            )
        )
        charges = _rows(
            connection,
            select(Charge.member_id, Charge.amount_fen)
            .where(Charge.cycle_id == cycle_id, col(Charge.member_id).between(start, end))
            .order_by(col(Charge.member_id)),
        )
        # A charge of no member (there is no foreign key) gets no ref: its leaf is wrong.
        yield from ((member_id, refs.get(member_id, ""), amount) for member_id, amount in charges)
        start = end + 1


def _rows(connection, statement) -> list[tuple]:
    """The DB-API's rows of a statement, as they come: SQLAlchemy's row objects cost three
    times the fetch itself here (0.5 against 1.7 µs a row for 50,000 charges)."""
    result = connection.execute(statement)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def bucket_roots(
    session: Session, cycle_id: int, low: int, high: int, secret: bytes
) -> dict[int, sumtree.Node]:
    """The roots of the buckets of an id range, recomputed from the charge rows."""
    key = sumtree.cycle_key(secret, cycle_id)
    rows = charged_rows(session, cycle_id, low, high)
    return {
        bucket: sumtree.root(records)
        for bucket, records in sumtree.charge_buckets(cycle_id, key, rows)
    }


def prove_chunk(
    session: Session, cycle: SharingCycle, chunk_no: int, secret: bytes, rows: int, amount: int
) -> bytes:
    """Build the chunk's subtree over the rows it has just charged (same transaction), store
    its bucket roots, and return its root's hash; its sums must be the chunk's."""
    low, high = chunk_span(cycle, chunk_no)
    roots = bucket_roots(session, cycle.id, low, high, secret)
    if roots:
        session.execute(
            insert(ProofBucket),
            [
                {
                    "cycle_id": cycle.id,
                    "chunk_no": chunk_no,
                    "bucket": bucket,
                    "hash": node.hash,
                    "amount_fen": node.amount,
                    "members": node.count,
                }
                for bucket, node in roots.items()
            ],
        )
    root = sumtree.root([node.record for node in roots.values()])
    if (root.count, root.amount) != (rows, amount):
        raise RuntimeError(
            f"cycle {cycle.id} chunk {chunk_no}: the subtree sums {root.amount} fen over "
            f"{root.count} members, the rows {amount} over {rows}"
        )
    return root.hash


def case_list(session: Session, cycle_id: int) -> list[tuple[str, int]]:
    """The cycle's cases as the 公示 lists them: their public ref and amount."""
    return [
        (ref, amount or 0)
        for ref, amount in session.exec(
            select(Claim.submission_id, Claim.amount_fen)
            .where(Claim.cycle_id == cycle_id, col(Claim.state).in_(CASE_STATES))
            .order_by(col(Claim.id))
        ).all()
    ]


def cases_root(cycle_id: int, cases: list[tuple[str, int]]) -> sumtree.Node:
    return sumtree.root([sumtree.case_leaf(cycle_id, amount, ref).record for ref, amount in cases])


def _chunk_records(session: Session, cycle_id: int) -> list[bytes]:
    chunks = session.exec(
        select(ChargeChunk.root, ChargeChunk.amount_fen, ChargeChunk.rows).where(
            ChargeChunk.cycle_id == cycle_id, ChargeChunk.rows > 0
        )
    ).all()
    return [sumtree.Node(root or b"", amount, rows).record for root, amount, rows in chunks]


def prove_cycle(session: Session, cycle: SharingCycle, keys: ProofKeys, now) -> None:
    """At finalise: the cycle's roots over its chunks' roots and over its cases, checked
    against its figures, and its entry appended to the log under a new signed head."""
    for chunk in session.exec(
        select(ChargeChunk).where(ChargeChunk.cycle_id == cycle.id, col(ChargeChunk.root).is_(None))
    ).all():  # charged before proofs were built (a close under way across the upgrade)
        chunk.root = prove_chunk(
            session, cycle, chunk.chunk_no, keys.secret, chunk.rows, chunk.amount_fen
        )
        session.add(chunk)
    session.flush()
    charges = sumtree.root(_chunk_records(session, cycle.id))
    cases = cases_root(cycle.id, case_list(session, cycle.id))
    if charges.amount != cycle.charged_fen or cases.amount != cycle.aid_fen:
        raise RuntimeError(
            f"cycle {cycle.id}: the trees sum {charges.amount} fen charged and {cases.amount} "
            f"of aid; the books say {cycle.charged_fen} and {cycle.aid_fen}"
        )
    cycle.charges_root, cycle.cases_root = charges.hash, cases.hash
    entry = cycle_entry(cycle, charges, cases)
    cycle.log_index = append_to_log(session, cycle.id, entry, keys.signer, now)


def cycle_entry(cycle: SharingCycle, charges: sumtree.Node, cases: sumtree.Node) -> str:
    return proofs.entry(
        cycle.plan, cycle.id, cycle.announce_on.isoformat(), cycle.share_fen, charges, cases
    )


def append_to_log(
    session: Session, cycle_id: int, entry: str, signer: Ed25519PrivateKey, now: datetime
) -> int:
    """Append one entry and sign the new head; one appender at a time (an advisory lock)."""
    lock_log(session)
    entries = log_leaves(session)
    index = len(entries)
    session.add(LogEntry(leaf_index=index, cycle_id=cycle_id, entry=entry, at=now))
    leaves = [*entries, translog.leaf_hash(entry.encode())]
    head = translog.TreeHead(len(leaves), int(now.timestamp() * 1000), translog.root(leaves))
    session.add(
        LogHead(
            size=head.size,
            timestamp_ms=head.timestamp_ms,
            root=head.root,
            signature=translog.sign_head(head, signer),
            public_key=signer.public_key().public_bytes_raw(),
        )
    )
    return index


def log_leaves(session: Session, size: int | None = None) -> list[bytes]:
    """The log's leaf hashes in order (a few hundred: one per closed cycle)."""
    query = select(LogEntry.entry).order_by(col(LogEntry.leaf_index))
    if size is not None:
        query = query.where(col(LogEntry.leaf_index) < size)
    return [translog.leaf_hash(e.encode()) for e in session.exec(query).all()]


def latest_head(session: Session) -> LogHead | None:
    return session.exec(select(LogHead).order_by(col(LogHead.size).desc())).first()


def head_at(session: Session, size: int) -> LogHead | None:
    return session.get(LogHead, size)


def head_document(head: LogHead) -> dict[str, Any]:
    tree_head = translog.TreeHead(head.size, head.timestamp_ms, head.root)
    return proofs.head_json(tree_head, head.signature, head.public_key)


def consistency(session: Session, old_size: int, new_size: int) -> list[bytes]:
    """The log's proof that its first `old_size` entries are the first of `new_size`."""
    return translog.consistency_proof(old_size, log_leaves(session, new_size))


def proven_cycle(session: Session, cycle: SharingCycle) -> LogEntry:
    if cycle.status != CycleStatus.CLOSED or cycle.log_index is None:
        raise NoProof(f"cycle {cycle.id} is not closed with proofs yet")
    logged = session.get(LogEntry, cycle.log_index)
    if logged is None or logged.cycle_id != cycle.id:  # the audit names it; no 500 meanwhile
        raise NoProof(f"cycle {cycle.id}'s entry is missing from the log: ask the operator")
    return logged


def log_document(session: Session, logged: LogEntry) -> dict[str, Any]:
    """The cycle's entry, its inclusion proof and the latest signed head it is proven under."""
    head = latest_head(session)
    if head is None or head.size <= logged.leaf_index:
        raise NoProof("the log has no signed head over this cycle's entry: ask the operator")
    leaves = log_leaves(session, head.size)
    return {
        "leaf_index": logged.leaf_index,
        "entry": logged.entry,
        "inclusion": [h.hex() for h in translog.inclusion_proof(logged.leaf_index, leaves)],
        "head": head_document(head),
    }


def cycle_document(session: Session, cycle: SharingCycle) -> dict[str, Any]:
    """What anyone may check of a closed cycle: its roots, its cases and its place in the log."""
    logged = proven_cycle(session, cycle)
    return {
        "plan": cycle.plan,
        "cycle_id": cycle.id,
        "charges_root": proofs.node_json(
            sumtree.Node(cycle.charges_root or b"", cycle.charged_fen, _charged(session, cycle))
        ),
        "cases": _cases_json(session, cycle.id),
        "log": log_document(session, logged),
    }


def _charged(session: Session, cycle: SharingCycle) -> int:
    rows = select(func.coalesce(func.sum(ChargeChunk.rows), 0))
    return session.exec(rows.where(ChargeChunk.cycle_id == cycle.id)).one()


def _cases_json(session: Session, cycle_id: int) -> list[dict[str, Any]]:
    return [{"case_ref": ref, "amount_fen": amount} for ref, amount in case_list(session, cycle_id)]


def member_proof(
    session: Session, cycle: SharingCycle, member: Member, secret: bytes
) -> dict[str, Any]:
    """The member's proof: their leaf, recomputed with the rest of their bucket from the rows,
    and its path up through the stored bucket and chunk roots to the cycle's root."""
    logged = proven_cycle(session, cycle)
    if cycle.charges_archived_at is not None:
        raise NoProof(f"cycle {cycle.id}'s charges are archived; a proof saved before still holds")
    charge = session.get(Charge, (cycle.id, member.id))
    if charge is None:
        raise NoProof(f"{member.member_ref} was not charged in cycle {cycle.id}")
    key = sumtree.cycle_key(secret, cycle.id)
    salt = sumtree.salt_of(key, member.id)
    leaf = sumtree.charge_leaf(cycle.id, charge.amount_fen, salt, member.member_ref)
    chunk_no = (member.id - cycle.first_member_id) // cycle.chunk_size
    steps = _in_bucket(session, cycle, chunk_no, member.id, key, leaf)
    steps += _in_chunk(session, cycle.id, chunk_no, member.id // sumtree.BUCKET_IDS)
    chunk = session.get(ChargeChunk, (cycle.id, chunk_no))
    if chunk is None:
        raise NoProof(f"cycle {cycle.id} has no chunk {chunk_no}: ask the operator")
    chunk_record = sumtree.Node(chunk.root or b"", chunk.amount_fen, chunk.rows).record
    cycle_tree = sumtree.levels(_chunk_records(session, cycle.id))
    steps += sumtree.path(cycle_tree, chunk_record)
    return {
        "kind": proofs.KIND,
        "version": proofs.VERSION,
        "leaf": {
            "cycle_id": cycle.id,
            "member_ref": member.member_ref,
            "salt": salt.hex(),
            "amount_fen": charge.amount_fen,
            "count": 1,
        },
        "path": [
            {
                "before": [proofs.node_json(n) for n in step.before],
                "after": [proofs.node_json(n) for n in step.after],
            }
            for step in steps
        ],
        "root": proofs.node_json(sumtree.Node.of(cycle_tree[-1][0])),
        "cases": _cases_json(session, cycle.id),
        "log": log_document(session, logged),
    }


def _in_bucket(
    session: Session, cycle: SharingCycle, chunk_no: int, member_id: int, key: bytes, leaf
) -> list[sumtree.Step]:
    """The leaf's path to its bucket's root, the bucket recomputed from today's rows (a row
    changed since the close leads to another root, and the proof fails)."""
    low, high = chunk_span(cycle, chunk_no)
    first = member_id // sumtree.BUCKET_IDS * sumtree.BUCKET_IDS
    last = first + sumtree.BUCKET_IDS - 1
    rows = charged_rows(session, cycle.id, max(low, first), min(high, last))
    records = [r for _, part in sumtree.charge_buckets(cycle.id, key, rows) for r in part]
    return sumtree.path(sumtree.levels(records), leaf.record)


def _in_chunk(session: Session, cycle_id: int, chunk_no: int, bucket: int) -> list[sumtree.Step]:
    """The bucket's path to its chunk's root, over the bucket roots stored at the close."""
    stored = {
        b.bucket: sumtree.Node(b.hash, b.amount_fen, b.members).record
        for b in session.exec(
            select(ProofBucket).where(
                ProofBucket.cycle_id == cycle_id, ProofBucket.chunk_no == chunk_no
            )
        ).all()
    }
    if bucket not in stored:
        raise NoProof(f"cycle {cycle_id} has no stored root for bucket {bucket}")
    return sumtree.path(sumtree.levels(list(stored.values())), stored[bucket])


def recomputed(session: Session, cycle: SharingCycle, secret: bytes) -> list[str]:
    """The audit of a closed cycle's proofs: every bucket, chunk and cycle root recomputed from
    the rows (an archived cycle's rows are gone: from its chunks up), and its log entry."""
    if cycle.charges_root is None:
        return [] if closed_before_proofs(session, cycle) else ["it has no proofs"]
    problems = _chunk_numbers(session, cycle)
    if rows_kept(session, cycle):
        problems += _rows_against_roots(session, cycle, secret)
    charges = sumtree.root(_chunk_records(session, cycle.id))
    if charges.hash != cycle.charges_root or charges.amount != cycle.charged_fen:
        problems.append("its charges root is not the one its chunks' roots make")
    cases = cases_root(cycle.id, case_list(session, cycle.id))
    if cases.hash != cycle.cases_root:
        problems.append("its cases root is not the one its cases make")
    logged = session.get(LogEntry, cycle.log_index) if cycle.log_index is not None else None
    if logged is None or logged.cycle_id != cycle.id:
        problems.append("it is not in the log of roots")
    elif logged.entry != cycle_entry(cycle, charges, cases):
        problems.append("its entry in the log is not its roots and figures")
    return problems


def closed_before_proofs(session: Session, cycle: SharingCycle) -> bool:
    """Closed before the log's first entry (migration 0006): its members have no proofs; any
    cycle closed since must have them."""
    first = session.exec(select(LogEntry.at).order_by(col(LogEntry.leaf_index)).limit(1)).first()
    closed = cycle.closed_at
    return cycle.charges_root is None and (first is None or closed is None or closed < first)


def rows_kept(session: Session, cycle: SharingCycle) -> bool:
    """Whether the cycle's charge rows are still there to audit: always, unless archived (on
    PostgreSQL its partition is detached; rows still found are audited all the same)."""
    if cycle.charges_archived_at is None:
        return True
    # LIMIT 1: without it the driver would fetch every row still there.
    any_row = select(Charge.member_id).where(Charge.cycle_id == cycle.id).limit(1)
    return session.exec(any_row).first() is not None


def _chunk_numbers(session: Session, cycle: SharingCycle) -> list[str]:
    """The cycle's chunks are the ones its span of members makes, and no row names another."""
    span = cycle.last_member_id - cycle.first_member_id + 1
    expected = -(-span // cycle.chunk_size) if cycle.chunks or cycle.charged_fen else 0
    problems = (
        []
        if cycle.chunks == expected
        else [f"it has {cycle.chunks} chunks; its {span:,} member ids make {expected}"]
    )
    beyond = [
        n
        for model in (ChargeChunk, ProofBucket)
        for n in session.exec(
            select(model.chunk_no).where(model.cycle_id == cycle.id, model.chunk_no >= cycle.chunks)
        ).all()
    ]
    if beyond:
        problems.append(f"rows of chunks {sorted(set(beyond))} beyond its {cycle.chunks} chunks")
    return problems


def _rows_against_roots(session: Session, cycle: SharingCycle, secret: bytes) -> list[str]:
    stored = {
        (b.chunk_no, b.bucket): sumtree.Node(b.hash, b.amount_fen, b.members).record
        for b in session.exec(select(ProofBucket).where(ProofBucket.cycle_id == cycle.id)).all()
    }
    chunks = {
        c.chunk_no: c
        for c in session.exec(select(ChargeChunk).where(ChargeChunk.cycle_id == cycle.id)).all()
    }
    changed, problems = [], []
    for chunk_no in range(cycle.chunks):
        roots = bucket_roots(session, cycle.id, *chunk_span(cycle, chunk_no), secret)
        for bucket, node in roots.items():
            if stored.pop((chunk_no, bucket), None) != node.record:
                changed.append(f"{chunk_no}/{bucket}")
        top = sumtree.root([n.record for n in roots.values()])
        chunk = chunks.get(chunk_no)
        made = (top.hash, top.count, top.amount)
        if chunk is None or (chunk.root, chunk.rows, chunk.amount_fen) != made:
            problems.append(f"chunk {chunk_no}'s root is not the one its charge rows make")
    changed += [f"{c}/{b}" for c, b in stored]
    if changed:
        problems.append(
            f"the charge rows of {len(changed)} bucket(s) (chunk/bucket {', '.join(changed[:5])}"
            f"{', …' if len(changed) > 5 else ''}) do not make the roots stored at the close: "
            "a charge was changed, added or removed since"
        )
    return problems


def log_problems(session: Session, trusted_key: bytes | None) -> list[str]:
    """The log itself: entries numbered without gaps, every signed head the root of the
    entries up to its size (a rewritten entry breaks every head after it), signed by the key."""
    entries = session.exec(select(LogEntry).order_by(col(LogEntry.leaf_index))).all()
    problems = []
    if [e.leaf_index for e in entries] != list(range(len(entries))):
        problems.append("the log's entries are not numbered 0, 1, 2, … without a gap")
    leaves = [translog.leaf_hash(e.entry.encode()) for e in entries]
    heads = session.exec(select(LogHead).order_by(col(LogHead.size))).all()
    for head in heads:
        tree_head = translog.TreeHead(head.size, head.timestamp_ms, head.root)
        if head.size > len(leaves) or translog.root(leaves[: head.size]) != head.root:
            problems.append(f"log head {head.size} is not the root of the log's first entries")
        if not translog.verify_head(tree_head, head.signature, head.public_key):
            problems.append(f"log head {head.size}'s signature does not verify")
        elif trusted_key is not None and head.public_key != trusted_key:
            problems.append(f"log head {head.size} is signed with another key than the log's")
    if [h.size for h in heads] != list(range(1, len(entries) + 1)):
        problems.append("the log needs one signed head per size, 1 to its entries' count")
    stamps = [h.timestamp_ms for h in heads]
    if stamps != sorted(stamps):
        problems.append("the log's signed heads go back in time")
    return problems + _entries_of_closed_cycles(session, entries)


def _entries_of_closed_cycles(session: Session, entries) -> list[str]:
    closed = dict(
        session.exec(
            select(SharingCycle.id, SharingCycle.log_index).where(
                SharingCycle.status == CycleStatus.CLOSED
            )
        ).all()
    )
    return [
        f"log entry {e.leaf_index} is not the entry of a closed cycle (cycle {e.cycle_id})"
        for e in entries
        if closed.get(e.cycle_id, -1) != e.leaf_index
    ]
