"""Merkle sum trees over a cycle's charges and over its cases: every node commits to each
child's hash and each child's sums, so no charge can be hidden, doubled or understated.

A node is a 48-byte record: its SHA-256 hash, then its amount and its count (signed 64-bit, big
endian). A parent hashes the prefix 0x01 and its children's records one after another, in the
fix of Hu, Zhang and Guo (ePrint 2018/1139) to Maxwell's tree: each child's sums are hashed on
their own, not only their total, so a sibling's sum cannot be shown smaller to one member than
to another. Nodes have up to 16 children (a sixteenth of the hashing of a binary tree; the path
of one member in a cycle of 100 million is seven levels of at most fifteen siblings), and a
group of one is carried up unhashed. Siblings are ordered by hash: a leaf's hash is keyed
through its salt, so the order says nothing about who sits next to whom.

A charge's leaf hashes 0x00, the cycle, the amount, the count (1), the member's salt and their
member_ref: the salt (16 bytes derived from the server's secret per cycle and member) makes it a
hiding commitment to the member, so a sibling's hash reveals no one, and cycles cannot be linked.
A case's leaf (the public tree) hashes 0x02, the cycle, the amount, 1 and the case's public ref.
"""

import hashlib
import hmac
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

FANOUT = 16
RECORD = 48
# Members are grouped by id into buckets of this many ids: a member's proof recomputes only their
# bucket (at most this many leaves, a few ms); the bucket roots are stored (about 100,000 rows a
# cycle of 100 million members).
BUCKET_IDS = 1024
SALT = 16
CHARGE_LEAF, NODE, CASE_LEAF = b"\x00", b"\x01", b"\x02"
_SUMS = struct.Struct(">qq")
_HEAD = struct.Struct(">cQqq")
_RECORDS = struct.Struct(">32sqq")
# The sums of k children's records in one unpacking (hashes skipped), for k = 0..FANOUT.
_CHILD_SUMS = [struct.Struct(">" + "32xqq" * k) for k in range(FANOUT + 1)]


@dataclass(frozen=True)
class Node:
    hash: bytes
    amount: int
    count: int

    @property
    def record(self) -> bytes:
        return self.hash + _SUMS.pack(self.amount, self.count)

    @classmethod
    def of(cls, record: bytes) -> "Node":
        digest, amount, count = _RECORDS.unpack(record)
        return cls(digest, amount, count)


EMPTY = Node(hashlib.sha256(b"").digest(), 0, 0)


def charge_leaf(cycle_id: int, amount: int, salt: bytes, member_ref: str) -> Node:
    head = _HEAD.pack(CHARGE_LEAF, cycle_id, amount, 1)
    return Node(hashlib.sha256(head + salt + member_ref.encode()).digest(), amount, 1)


def case_leaf(cycle_id: int, amount: int, case_ref: str) -> Node:
    head = _HEAD.pack(CASE_LEAF, cycle_id, amount, 1)
    return Node(hashlib.sha256(head + case_ref.encode()).digest(), amount, 1)


def parent(children: Sequence[bytes]) -> bytes:
    """The record of the node over these children's records (one child: the child itself)."""
    if len(children) == 1:
        return children[0]
    blob = b"".join(children)
    sums = _CHILD_SUMS[len(children)].unpack(blob)
    return hashlib.sha256(NODE + blob).digest() + _SUMS.pack(sum(sums[::2]), sum(sums[1::2]))


def levels(records: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree over `records` (sorted here), leaves first, the root last."""
    if not records:
        return [[EMPTY.record]]
    tree = [sorted(records)]
    while len(tree[-1]) > 1:
        below = tree[-1]
        tree.append([parent(below[i : i + FANOUT]) for i in range(0, len(below), FANOUT)])
    return tree


def root(records: list[bytes]) -> Node:
    return Node.of(levels(records)[-1][0])


@dataclass(frozen=True)
class Step:
    """One level of a path: the siblings before and after the node on the way up."""

    before: list[Node]
    after: list[Node]


def path(tree: list[list[bytes]], record: bytes) -> list[Step]:
    """The way from `record` (a leaf of `tree`) to the root; levels where the node is carried up
    alone are left out, as they change nothing."""
    steps = []
    index = tree[0].index(record)
    for level in tree[:-1]:
        start = index - index % FANOUT
        group = level[start : start + FANOUT]
        at = index - start
        if len(group) > 1:
            steps.append(
                Step([Node.of(r) for r in group[:at]], [Node.of(r) for r in group[at + 1 :]])
            )
        index //= FANOUT
    return steps


def climb(node: Node, steps: Iterable[Step]) -> Node:
    """The root that `node` and its path lead to (the verifier's side)."""
    for step in steps:
        children = [*step.before, node, *step.after]
        node = Node.of(parent([child.record for child in children]))
    return node


def cycle_key(secret: bytes, cycle_id: int) -> bytes:
    """The cycle's own key: salts of two cycles share nothing, so cycles cannot be linked."""
    return hmac.digest(secret, b"huzhu-salt-v1" + cycle_id.to_bytes(8, "big"), "sha256")


def bucket_salts(key: bytes, bucket: int) -> bytes:
    """The salts of one bucket's ids, SALT bytes each, in id order: SHAKE-256 over the cycle's
    key and the bucket is a keyed pseudorandom stream, one call for a bucket."""
    return hashlib.shake_256(key + bucket.to_bytes(8, "big")).digest(SALT * BUCKET_IDS)


def salt_of(key: bytes, member_id: int) -> bytes:
    offset = SALT * (member_id % BUCKET_IDS)
    return bucket_salts(key, member_id // BUCKET_IDS)[offset : offset + SALT]


def charge_buckets(
    cycle_id: int, key: bytes, rows: Iterable[tuple[int, str, int]]
) -> Iterator[tuple[int, list[bytes]]]:
    """The leaf records of charges (member id, member_ref, amount; in member id order), one
    bucket at a time, so memory holds one bucket whatever the chunk's size. The hot loop of
    proving a close: one SHA-256 per member and no objects."""
    heads: dict[int, tuple[bytes, bytes]] = {}
    bucket, salts, records = -1, b"", []
    sha256 = hashlib.sha256
    for member_id, member_ref, amount in rows:
        if member_id // BUCKET_IDS != bucket:
            if records:
                yield bucket, records
            bucket, records = member_id // BUCKET_IDS, []
            salts = bucket_salts(key, bucket)
        if amount not in heads:
            heads[amount] = (_HEAD.pack(CHARGE_LEAF, cycle_id, amount, 1), _SUMS.pack(amount, 1))
        head, sums = heads[amount]
        offset = SALT * (member_id % BUCKET_IDS)
        leaf = sha256(head + salts[offset : offset + SALT] + member_ref.encode()).digest()
        records.append(leaf + sums)
    if records:
        yield bucket, records
