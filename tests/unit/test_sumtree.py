"""The sum tree and the proof check, pure: honest proofs hold, and every kind of tampering a
member could be shown is refused."""

import copy
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import proofs, sumtree, translog

SECRET = b"s" * 32
CYCLE = 7
SHARE = 300


def members(count: int, amounts: list[int] | None = None) -> list[tuple[int, str, int]]:
    """(member id, member_ref, amount) rows with gaps in the ids, in id order."""
    amounts = amounts or [SHARE] * count
    return [(3 * n + 1, f"M{n:07d}", amounts[n]) for n in range(count)]


def leaf_records(rows) -> list[bytes]:
    key = sumtree.cycle_key(SECRET, CYCLE)
    return [r for _, part in sumtree.charge_buckets(CYCLE, key, rows) for r in part]


def document(rows, who: int, key: Ed25519PrivateKey | None = None, cases=(("C-1", 500),)):
    """A proof of rows[who] in a one-bucket cycle, logged as the second of two entries, as the
    service builds it (tests of the service itself run in tests/integration/test_proofs.py)."""
    key = key or Ed25519PrivateKey.generate()
    member_id, ref, amount = rows[who]
    salt = sumtree.salt_of(sumtree.cycle_key(SECRET, CYCLE), member_id)
    tree = sumtree.levels(leaf_records(rows))
    leaf = sumtree.charge_leaf(CYCLE, amount, salt, ref)
    root = sumtree.Node.of(tree[-1][0])
    case_root = sumtree.root([sumtree.case_leaf(CYCLE, a, r).record for r, a in cases])
    entry = proofs.entry("critical-illness", CYCLE, "2026-12-07", SHARE, root, case_root)
    leaves = [translog.leaf_hash(b"an earlier cycle"), translog.leaf_hash(entry.encode())]
    head = translog.TreeHead(2, 1_765_000_000_000, translog.root(leaves))
    public = key.public_key().public_bytes_raw()
    return {
        "kind": proofs.KIND,
        "version": proofs.VERSION,
        "leaf": {
            "cycle_id": CYCLE,
            "member_ref": ref,
            "salt": salt.hex(),
            "amount_fen": amount,
            "count": 1,
        },
        "path": [
            {
                "before": [proofs.node_json(n) for n in step.before],
                "after": [proofs.node_json(n) for n in step.after],
            }
            for step in sumtree.path(tree, leaf.record)
        ],
        "root": proofs.node_json(root),
        "cases": [{"case_ref": r, "amount_fen": a} for r, a in cases],
        "log": {
            "leaf_index": 1,
            "entry": entry,
            "inclusion": [h.hex() for h in translog.inclusion_proof(1, leaves)],
            "head": proofs.head_json(head, translog.sign_head(head, key), public),
        },
    }


def failed_step(checks: list[proofs.Check]) -> str | None:
    return next((c.name for c in checks if not c.ok), None)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, SHARE), min_size=1, max_size=700))
def test_every_leaf_climbs_to_a_root_that_sums_every_charge(amounts):
    rows = members(len(amounts), amounts)
    tree = sumtree.levels(leaf_records(rows))
    root = sumtree.Node.of(tree[-1][0])
    assert (root.amount, root.count) == (sum(amounts), len(amounts))
    for record in tree[0]:
        assert sumtree.climb(sumtree.Node.of(record), sumtree.path(tree, record)) == root


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 300), st.data())
def test_an_honest_proof_holds_for_every_member(count, data):
    amounts = data.draw(st.lists(st.integers(0, SHARE), min_size=count, max_size=count))
    rows = members(count, amounts)
    key = Ed25519PrivateKey.generate()
    for who in range(count):
        checks = proofs.verify(document(rows, who, key), expected_member=rows[who][1])
        assert proofs.holds(checks), checks


def test_a_parent_hashes_each_childs_sums_not_only_their_total():
    """Maxwell's tree hashed only the total; moving a fen between two siblings kept the parent,
    so a sibling could be shown smaller to one member. Here it changes the parent."""
    a, b = sumtree.Node(b"a" * 32, 10, 1), sumtree.Node(b"b" * 32, 20, 1)
    moved = [sumtree.Node(a.hash, 11, 1), sumtree.Node(b.hash, 19, 1)]
    honest = sumtree.Node.of(sumtree.parent([a.record, b.record]))
    shifted = sumtree.Node.of(sumtree.parent([n.record for n in moved]))
    assert (honest.amount, honest.count) == (shifted.amount, shifted.count) == (30, 2)
    assert honest.hash != shifted.hash


def test_salts_are_per_member_and_per_cycle():
    key = sumtree.cycle_key(SECRET, CYCLE)
    other_cycle = sumtree.cycle_key(SECRET, CYCLE + 1)
    around = sumtree.BUCKET_IDS  # across a bucket's end
    salts = {sumtree.salt_of(key, member_id) for member_id in range(around - 10, around + 10)}
    assert len(salts) == 20 and all(len(s) == sumtree.SALT for s in salts)
    assert sumtree.salt_of(key, around) != sumtree.salt_of(other_cycle, around)
    assert sumtree.salt_of(key, around) == sumtree.salt_of(sumtree.cycle_key(SECRET, CYCLE), around)


def test_buckets_follow_the_member_ids():
    size = sumtree.BUCKET_IDS
    rows = [(size - 1, "A", 1), (size, "B", 2), (2 * size - 1, "C", 3), (2 * size, "D", 4)]
    buckets = dict(sumtree.charge_buckets(CYCLE, sumtree.cycle_key(SECRET, CYCLE), iter(rows)))
    assert {b: len(r) for b, r in buckets.items()} == {0: 1, 1: 2, 2: 1}
    salt = sumtree.salt_of(sumtree.cycle_key(SECRET, CYCLE), size)
    assert sumtree.charge_leaf(CYCLE, 2, salt, "B").record in buckets[1]


def test_a_proof_is_of_its_member():
    rows = members(40)
    assert proofs.holds(proofs.verify(document(rows, 3), expected_member=rows[3][1]))
    checks = proofs.verify(document(rows, 3), expected_member=rows[4][1])
    assert failed_step(checks) == "your leaf"


def test_the_same_leaf_shown_to_two_members_fails_for_one_of_them():
    rows = members(40)
    shown = document(rows, 3)
    shown["leaf"]["member_ref"] = rows[4][1]  # member 4 is shown member 3's leaf and path
    assert failed_step(proofs.verify(shown, expected_member=rows[4][1])) == "path to the root"


def tampered(change) -> dict:
    shown = document(members(100), 10)
    change(shown)
    return shown


@pytest.mark.parametrize(
    ("change", "step"),
    [
        (lambda d: d["leaf"].update(amount_fen=299), "path to the root"),
        (lambda d: d["leaf"].update(amount_fen=-1), "your leaf"),
        (lambda d: d["leaf"].update(amount_fen=SHARE + 1), "your leaf"),
        (lambda d: d["leaf"].update(count=2), "your leaf"),
        (lambda d: d["path"][0]["after"][0].update(amount_fen=-300), "path to the root"),
        (lambda d: d["path"][0]["before"][0].update(amount_fen=0), "path to the root"),
        (lambda d: d["path"][0]["before"][0].update(count=0), "path to the root"),
        (lambda d: d["path"][-1]["after"][0].update(amount_fen=2 * 300 * 16), "path to the root"),
        (
            lambda d: d["path"][0]["before"].clear() or d["path"][0]["after"].clear(),
            "path to the root",
        ),
        (lambda d: d["root"].update(amount_fen=d["root"]["amount_fen"] - 1), "path to the root"),
        (lambda d: d["cases"].append({"case_ref": "C-2", "amount_fen": 1}), "cases"),
        (lambda d: d["log"].update(leaf_index=0), "log entry"),
        (lambda d: d["log"]["head"].update(size=3), "log entry"),
        (lambda d: d["log"]["head"].update(timestamp_ms=1), "signed head"),
        (lambda d: d.update(version=2), "format"),
        (lambda d: d["leaf"].pop("salt"), "your leaf"),
        # Python's True == 1 and 1.0 == 1: only ints are counts and versions.
        (lambda d: d.update(version=True), "format"),
        (lambda d: d["leaf"].update(count=1.0), "your leaf"),
        (lambda d: d["leaf"].update(cycle_id=float(CYCLE)), "your leaf"),
        # Past 64 bits: refused as malformed, never raised.
        (
            lambda d: d["path"][0]["before"][0].update(amount_fen=2**63, count=2**62),
            "path to the root",
        ),
        (lambda d: d["path"][0]["before"][0].update(count=2**63), "path to the root"),
        (
            lambda d: d["log"].update(
                entry=d["log"]["entry"].replace('"plan":"critical-illness"', '"plan":NaN')
            ),
            "format",
        ),
    ],
)
def test_tampering_is_refused(change, step):
    assert failed_step(proofs.verify(tampered(change))) == step


def test_totals_other_than_published_are_refused():
    """A doubled leaf (or a member added) makes a root of one member more than the cycle
    published: its entry, signed in the log, says how many were charged."""
    rows = members(50)
    doubled = [*rows, rows[7]]
    shown = document(doubled, 3)
    fields = json.loads(shown["log"]["entry"])
    fields["members"] -= 1  # as published: 50 members, not 51
    fields["charged_fen"] -= SHARE
    key = Ed25519PrivateKey.generate()
    shown = relogged(shown, fields, key)
    assert failed_step(proofs.verify(shown)) == "totals"


def relogged(shown: dict, fields: dict, key: Ed25519PrivateKey) -> dict:
    """The document with its entry replaced and the log re-signed, as a dishonest operator
    with the log's key could."""
    shown = copy.deepcopy(shown)
    entry = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    leaves = [translog.leaf_hash(b"an earlier cycle"), translog.leaf_hash(entry.encode())]
    head = translog.TreeHead(2, 1_765_000_000_000, translog.root(leaves))
    public = key.public_key().public_bytes_raw()
    shown["log"] |= {
        "entry": entry,
        "inclusion": [h.hex() for h in translog.inclusion_proof(1, leaves)],
        "head": proofs.head_json(head, translog.sign_head(head, key), public),
    }
    return shown


def test_a_head_signed_with_another_key_is_refused():
    ours, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    shown = document(members(20), 2, theirs)
    trusted = ours.public_key().public_bytes_raw()
    assert failed_step(proofs.verify(shown, trusted_key=trusted)) == "signed head"
    forged = copy.deepcopy(shown)
    forged["log"]["head"]["public_key"] = trusted.hex()  # our key named, their signature
    assert failed_step(proofs.verify(forged, trusted_key=trusted)) == "signed head"


def test_a_published_head_must_contain_the_files():
    key = Ed25519PrivateKey.generate()
    shown = document(members(20), 2, key)
    later_leaves = [
        translog.leaf_hash(b"an earlier cycle"),
        translog.leaf_hash(shown["log"]["entry"].encode()),
        translog.leaf_hash(b"a later cycle"),
    ]
    later = translog.TreeHead(3, 1_766_000_000_000, translog.root(later_leaves))
    public = key.public_key().public_bytes_raw()
    published = proofs.head_json(later, translog.sign_head(later, key), public)
    proof = [h.hex() for h in translog.consistency_proof(2, later_leaves)]
    assert proofs.holds(proofs.verify(shown, published_head=published, consistency=proof))
    # The same later log with the second entry's root rewritten does not contain the file's.
    rewritten = [later_leaves[0], translog.leaf_hash(b"a rewritten root"), later_leaves[2]]
    forged = translog.TreeHead(3, 1_766_000_000_000, translog.root(rewritten))
    published = proofs.head_json(forged, translog.sign_head(forged, key), public)
    proof = [h.hex() for h in translog.consistency_proof(2, rewritten)]
    checks = proofs.verify(shown, published_head=published, consistency=proof)
    assert failed_step(checks) == "published head"
    assert failed_step(proofs.verify(shown, published_head=published)) == "published head"


def test_a_proof_of_another_cycle_is_refused_when_the_cycle_is_named():
    shown = document(members(20), 2)
    assert failed_step(proofs.verify(shown, expected_cycle=CYCLE + 1)) == "your leaf"
    checks = proofs.verify(shown, expected_cycle=CYCLE)
    assert proofs.holds(checks)
    assert f"critical-illness cycle {CYCLE}, announced 2026-12-07" in checks[5].detail


def test_a_malformed_document_is_refused_not_raised():
    for broken in (
        {},
        {"kind": proofs.KIND, "version": 1},
        {"kind": proofs.KIND, "version": 1, "log": {"entry": "{"}},
    ):
        assert failed_step(proofs.verify(broken)) == "format"
