"""The log's Merkle tree against transparency-dev/merkle's published vectors, the RFC 9162 proofs'
properties under Hypothesis, signed tree heads, and what the builders and verifiers refuse."""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from domain.translog import (
    EMPTY_ROOT,
    TreeHead,
    consistency_proof,
    head_bytes,
    inclusion_proof,
    key_id,
    leaf_hash,
    node_hash,
    root,
    sign_head,
    verify_consistency,
    verify_head,
    verify_inclusion,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "data/rfc9162/transparency-dev-merkle.json").read_text()
)
TREE = VECTORS["tree"]
LEAVES = [leaf_hash(bytes.fromhex(entry)) for entry in TREE["leaf_inputs"]]
ROOTS = [bytes.fromhex(value) for value in TREE["roots_by_size"]]

# Where we knowingly answer otherwise than the Go library's probe, and why.
DEVIATIONS = {
    "testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": (
        'its two equal roots are 11 bytes, "don\'t care 2": we refuse hashes that are not 32 bytes'
    ),
}


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(value) for value in values]


def _expected(probe: dict[str, Any]) -> bool:
    """Whether we accept the probe: as the Go library does, save for the DEVIATIONS."""
    return probe["wantErr"] if probe["file"] in DEVIATIONS else not probe["wantErr"]


def _probe_id(probe: dict[str, Any]) -> str:
    return probe["file"].removeprefix("testdata/")


# -- the published vectors --------------------------------------------------------------------


def test_the_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == ROOTS[0] == hashlib.sha256(b"").digest() == root([])


def test_leaf_and_node_hashes_match_the_published_complete_subtrees() -> None:
    levels = [_hexes(level) for level in TREE["node_hashes_by_level"]]
    assert levels[0] == LEAVES
    for level, hashes in enumerate(levels[1:], start=1):
        width = 2**level
        for position, expected in enumerate(hashes):
            below = levels[level - 1]
            assert node_hash(below[2 * position], below[2 * position + 1]) == expected
            assert root(LEAVES[position * width : (position + 1) * width]) == expected


@pytest.mark.parametrize("size", range(9))
def test_the_root_of_each_published_tree_size(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize("probe", VECTORS["inclusion"], ids=_probe_id)
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    leaf, proof, tree_root = (
        bytes.fromhex(probe["leafHash"]),
        _hexes(probe["proof"]),
        bytes.fromhex(probe["root"]),
    )
    accepted = verify_inclusion(probe["leafIdx"], probe["treeSize"], leaf, proof, tree_root)
    assert accepted is _expected(probe)


@pytest.mark.parametrize("probe", VECTORS["consistency"], ids=_probe_id)
def test_consistency_probe(probe: dict[str, Any]) -> None:
    old_root, new_root = bytes.fromhex(probe["root1"]), bytes.fromhex(probe["root2"])
    proof = _hexes(probe["proof"])
    accepted = verify_consistency(probe["size1"], probe["size2"], old_root, new_root, proof)
    assert accepted is _expected(probe)


def _over_the_published_tree(kind: str) -> list[dict[str, Any]]:
    """The happy paths over the 8 leaves of LeafInputs (the others use made-up hashes)."""
    return [p for p in VECTORS[kind] if not p["wantErr"] and "/additional/" not in p["file"]]


def test_our_inclusion_proofs_are_the_published_ones() -> None:
    probes = [p for p in _over_the_published_tree("inclusion") if "single-entry" not in p["file"]]
    assert len(probes) == 5  # inclusion/0 to 4: nothing skipped by the filter above
    for probe in probes:
        size, index = probe["treeSize"], probe["leafIdx"]
        assert bytes.fromhex(probe["leafHash"]) == LEAVES[index]
        assert bytes.fromhex(probe["root"]) == ROOTS[size]
        assert inclusion_proof(index, LEAVES[:size]) == _hexes(probe["proof"]), probe["file"]


def test_our_consistency_proofs_are_the_published_ones() -> None:
    probes = _over_the_published_tree("consistency")
    assert len(probes) == 5  # consistency/0 to 4
    for probe in probes:
        old_size, new_size = probe["size1"], probe["size2"]
        assert bytes.fromhex(probe["root1"]) == ROOTS[old_size]
        assert bytes.fromhex(probe["root2"]) == ROOTS[new_size]
        expected = _hexes(probe["proof"])
        assert consistency_proof(old_size, LEAVES[:new_size]) == expected, probe["file"]


ACCUMULATED = VECTORS["accumulated"]
SMALL_LEAVES = [leaf_hash(bytes([i])) for i in range(ACCUMULATED["max_size"])]


def _valid_subtrees() -> list[tuple[int, int]]:
    """[start, end) in the order of the published digests, kept when 'valid_subtree' says so."""
    kept = []
    for end in range(ACCUMULATED["max_size"] + 1):
        for start in range(end + 1):
            width = end - start
            aligned_to = 1 << (width - 1).bit_length() if width else 1
            if start == 0 or start == end or start % aligned_to == 0:
                kept.append((start, end))
    return kept


def test_subtree_hashes_of_trees_up_to_130_leaves_fold_to_the_published_digest() -> None:
    digest = hashlib.sha256()
    for start, end in _valid_subtrees():
        digest.update(f"[{start}, {end}) {root(SMALL_LEAVES[start:end]).hex()}\n".encode())
    assert digest.hexdigest() == ACCUMULATED["subtree_hash"]["sha256"]


def test_inclusion_proofs_in_trees_up_to_130_leaves_fold_to_the_published_digest() -> None:
    # Within an aligned subtree [start, end) the proof is PATH(index - start, D[start:end]).
    digest = hashlib.sha256()
    for start, end in _valid_subtrees():
        for index in range(start, end):
            nodes = inclusion_proof(index - start, SMALL_LEAVES[start:end])
            line = f"{index} [{start}, {end})" + "".join(f" {node.hex()}" for node in nodes)
            digest.update(f"{line}\n".encode())
    assert digest.hexdigest() == ACCUMULATED["subtree_inclusion"]["sha256"]


# -- properties -------------------------------------------------------------------------------


@st.composite
def trees(draw: st.DrawFn, min_size: int = 1) -> list[bytes]:
    """Leaf hashes of distinct entries: with repeated entries a wrong index can rightly verify."""
    size = draw(st.integers(min_size, 300))
    salt = draw(st.binary(max_size=8))
    return [leaf_hash(salt + i.to_bytes(2, "big")) for i in range(size)]


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _path_shape(index: int, size: int) -> Any:
    """The root as PATH's definition assembles it: 'leaf', and proof node j as the number j.
    Two (index, size) with one shape verify the same proofs."""

    def shape(m: int, n: int) -> tuple[Any, int]:
        if n == 1:
            return "leaf", 0
        k = _largest_power_of_two_below(n)
        if m < k:
            below, used = shape(m, k)
            return (below, used), used + 1
        below, used = shape(m - k, n - k)
        return (used, below), used + 1

    return shape(index, size)


def _consistency_shape(old_size: int, new_size: int) -> Any:
    """(old root, new root, nodes used) as SUBPROOF's definition assembles them from the proof
    (node j as the number j) and the old root the verifier holds ('old'); 0 < old < new."""

    def shape(m: int, n: int, whole_old_tree: bool) -> tuple[Any, Any, int]:
        if m == n:
            return ("old", "old", 0) if whole_old_tree else (0, 0, 1)
        k = _largest_power_of_two_below(n)
        if m <= k:
            old, new, used = shape(m, k, whole_old_tree)
            return old, (new, used), used + 1
        old, new, used = shape(m - k, n - k, False)
        return (used, old), (used, new), used + 1

    return shape(old_size, new_size, True)


def _flip(value: bytes, position: int, mask: int) -> bytes:
    changed = bytearray(value)
    changed[position % len(value)] ^= mask
    return bytes(changed)


@pytest.mark.parametrize("size", range(1, 41))
def test_every_proof_of_every_small_tree_verifies(size: int) -> None:
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(size)]
    tree_root = root(leaves)
    for index in range(size):
        proof = inclusion_proof(index, leaves)
        assert verify_inclusion(index, size, leaves[index], proof, tree_root)
    for old_size in range(size + 1):
        proof = consistency_proof(old_size, leaves)
        assert verify_consistency(old_size, size, root(leaves[:old_size]), tree_root, proof)


@given(trees(), st.data())
def test_an_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(index, leaves)
    assert verify_inclusion(index, len(leaves), leaves[index], proof, root(leaves))


@given(trees(), st.data())
def test_a_consistency_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    old_size = data.draw(st.integers(0, len(leaves)))
    proof = consistency_proof(old_size, leaves)
    old_root, new_root = root(leaves[:old_size]), root(leaves)
    assert verify_consistency(old_size, len(leaves), old_root, new_root, proof)


@given(trees(min_size=2), st.data())
def test_a_changed_inclusion_proof_fails(leaves: list[bytes], data: st.DataObject) -> None:
    size, tree_root = len(leaves), root(leaves)
    index = data.draw(st.integers(0, size - 1))
    leaf, proof = leaves[index], inclusion_proof(index, leaves)
    node = data.draw(st.integers(0, len(proof) - 1))
    byte, mask = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))

    flipped = [*proof[:node], _flip(proof[node], byte, mask), *proof[node + 1 :]]
    assert not verify_inclusion(index, size, leaf, flipped, tree_root)
    assert not verify_inclusion(index, size, leaf, proof[:node] + proof[node + 1 :], tree_root)
    extra = data.draw(st.sampled_from([*proof, leaf, tree_root, bytes(32)]))
    at = data.draw(st.integers(0, len(proof)))
    assert not verify_inclusion(index, size, leaf, [*proof[:at], extra, *proof[at:]], tree_root)
    assert not verify_inclusion(index, size, _flip(leaf, byte, mask), proof, tree_root)
    assert not verify_inclusion(index, size, leaf, proof, _flip(tree_root, byte, mask))
    assert not verify_inclusion(index, size, leaf, proof, root(leaves[:-1]))


@given(trees(min_size=2), st.data())
def test_an_inclusion_proof_fails_at_another_index(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size, tree_root = len(leaves), root(leaves)
    index = data.draw(st.integers(0, size - 1))
    other = data.draw(st.integers(-3, size + 3).filter(lambda i: i != index))
    proof = inclusion_proof(index, leaves)
    assert not verify_inclusion(other, size, leaves[index], proof, tree_root)


@given(trees(), st.data())
def test_an_inclusion_proof_holds_at_another_size_only_for_the_same_shape(
    leaves: list[bytes], data: st.DataObject
) -> None:
    # The proof does not carry the size (the signed head does): a size whose path has the same
    # shape, say index 0 in 3 leaves or in 4, computes the same root from the same nodes.
    size, tree_root = len(leaves), root(leaves)
    index = data.draw(st.integers(0, size - 1))
    other = data.draw(st.integers(-1, 2 * size + 2).filter(lambda n: n != size))
    proof = inclusion_proof(index, leaves)
    same_shape = other > index and _path_shape(index, other) == _path_shape(index, size)
    assert verify_inclusion(index, other, leaves[index], proof, tree_root) is same_shape


def test_the_size_is_bound_by_the_signed_head_not_by_the_proof() -> None:
    three = LEAVES[:3]
    assert verify_inclusion(0, 4, three[0], inclusion_proof(0, three), ROOTS[3])
    assert verify_consistency(2, 3, ROOTS[1], ROOTS[2], consistency_proof(1, LEAVES[:2]))


@given(trees(min_size=2), st.data())
def test_a_changed_consistency_proof_fails(leaves: list[bytes], data: st.DataObject) -> None:
    size = len(leaves)
    old_size = data.draw(st.integers(1, size - 1))
    old_root, new_root = root(leaves[:old_size]), root(leaves)
    proof = consistency_proof(old_size, leaves)
    node = data.draw(st.integers(0, len(proof) - 1))
    byte, mask = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))

    def holds(nodes: list[bytes], old: bytes = old_root, new: bytes = new_root) -> bool:
        return verify_consistency(old_size, size, old, new, nodes)

    assert holds(proof)
    assert not holds([*proof[:node], _flip(proof[node], byte, mask), *proof[node + 1 :]])
    assert not holds(proof[:node] + proof[node + 1 :])
    extra = data.draw(st.sampled_from([*proof, old_root, new_root, bytes(32)]))
    at = data.draw(st.integers(0, len(proof)))
    assert not holds([*proof[:at], extra, *proof[at:]])
    assert not holds(proof, old=_flip(old_root, byte, mask))
    assert not holds(proof, new=_flip(new_root, byte, mask))
    assert not holds(proof, old=new_root, new=old_root)
    assert not holds(proof, new=root(leaves[:-1]))


@given(trees(min_size=2), st.data())
def test_a_consistency_proof_holds_at_other_sizes_only_for_the_same_shape(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = len(leaves)
    old_size = data.draw(st.integers(1, size - 1))
    old_root, new_root = root(leaves[:old_size]), root(leaves)
    proof = consistency_proof(old_size, leaves)
    other_old = data.draw(st.integers(-1, size + 2))
    other_new = data.draw(st.integers(-1, 2 * size + 2))
    if (other_old, other_new) == (old_size, size):
        other_new += 1
    same_shape = 0 < other_old < other_new and (
        _consistency_shape(other_old, other_new) == _consistency_shape(old_size, size)
    )
    assert verify_consistency(other_old, other_new, old_root, new_root, proof) is same_shape


def test_big_trees_are_quick() -> None:
    # No exponential recursion: 10,000 leaves take a fraction of a second.
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(10_000)]
    tree_root = root(leaves)
    proof = inclusion_proof(6_789, leaves)
    assert verify_inclusion(6_789, 10_000, leaves[6_789], proof, tree_root)
    proof = consistency_proof(3_333, leaves)
    assert verify_consistency(3_333, 10_000, root(leaves[:3_333]), tree_root, proof)


# -- our choices at the edges -----------------------------------------------------------------


def test_the_empty_tree_is_consistent_with_any_tree_given_an_empty_proof() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])
    assert not verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [ROOTS[8]])
    assert not verify_consistency(0, 8, ROOTS[1], ROOTS[8], [])  # not the empty tree's root
    assert not verify_consistency(0, 0, EMPTY_ROOT, ROOTS[1], [])


def test_equal_sizes_need_an_empty_proof_and_equal_roots() -> None:
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[5]])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[6], [])


HASH = ROOTS[8]
BAD_INCLUSIONS = {
    "negative index": (-1, 8, LEAVES[0], [HASH], HASH),
    "index at the size": (8, 8, LEAVES[0], [HASH], HASH),
    "empty tree": (0, 0, LEAVES[0], [], EMPTY_ROOT),
    "size over uint64": (0, 2**64, LEAVES[0], [HASH], HASH),
    "boolean index": (False, 1, LEAVES[0], [], LEAVES[0]),
    "float size": (0, 1.0, LEAVES[0], [], LEAVES[0]),
    "short leaf": (0, 1, LEAVES[0][:31], [], LEAVES[0][:31]),
    "leaf as text": (0, 1, LEAVES[0].hex(), [], LEAVES[0]),
    "no root": (0, 1, LEAVES[0], [], None),
    "long root": (0, 2, LEAVES[0], [LEAVES[1]], ROOTS[2] + b"\x00"),
    "no proof": (0, 1, LEAVES[0], None, LEAVES[0]),
    "proof as bytes": (0, 2, LEAVES[0], LEAVES[1], ROOTS[2]),
    "short node": (0, 2, LEAVES[0], [LEAVES[1][:31]], ROOTS[2]),
    "node as text": (0, 2, LEAVES[0], [LEAVES[1].hex()], ROOTS[2]),
    "node as int": (0, 2, LEAVES[0], [7], ROOTS[2]),
}


@pytest.mark.parametrize("arguments", BAD_INCLUSIONS.values(), ids=BAD_INCLUSIONS.keys())
def test_verify_inclusion_says_no_to_malformed_input(arguments: tuple[Any, ...]) -> None:
    assert verify_inclusion(*arguments) is False


PROOF_6_8 = consistency_proof(6, LEAVES)
BAD_CONSISTENCIES = {
    "old size over new": (8, 6, ROOTS[8], ROOTS[6], PROOF_6_8),
    "negative old size": (-1, 8, ROOTS[6], ROOTS[8], PROOF_6_8),
    "negative sizes": (-2, -1, EMPTY_ROOT, EMPTY_ROOT, []),
    "new size over uint64": (6, 2**64, ROOTS[6], ROOTS[8], PROOF_6_8),
    "boolean size": (True, 1, ROOTS[1], ROOTS[1], []),
    "short old root": (6, 8, ROOTS[6][:31], ROOTS[8], PROOF_6_8),
    "new root as text": (6, 8, ROOTS[6], ROOTS[8].hex(), PROOF_6_8),
    "no proof": (6, 8, ROOTS[6], ROOTS[8], None),
    "proof as bytes": (6, 8, ROOTS[6], ROOTS[8], b"".join(PROOF_6_8)),
    "short node": (6, 8, ROOTS[6], ROOTS[8], [PROOF_6_8[0][:31], *PROOF_6_8[1:]]),
    "empty proof for growth": (6, 8, ROOTS[6], ROOTS[8], []),
}


@pytest.mark.parametrize("arguments", BAD_CONSISTENCIES.values(), ids=BAD_CONSISTENCIES.keys())
def test_verify_consistency_says_no_to_malformed_input(arguments: tuple[Any, ...]) -> None:
    assert verify_consistency(*arguments) is False


# -- the builders' refusals -------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size"), [(-1, 8), (8, 8), (0, 0), (100, 3)])
def test_inclusion_proof_refuses_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError, match=f"leaf index {index} is outside a tree of {size} leaves"):
        inclusion_proof(index, LEAVES[:size])


@pytest.mark.parametrize(("old_size", "size"), [(-1, 8), (9, 8), (1, 0)])
def test_consistency_proof_refuses_an_old_size_outside_the_tree(old_size: int, size: int) -> None:
    with pytest.raises(ValueError, match=f"old size {old_size} must be between 0 and the tree's"):
        consistency_proof(old_size, LEAVES[:size])


@pytest.mark.parametrize("count", [1.0, "1", True, None])
def test_the_builders_refuse_what_is_not_a_whole_number(count: Any) -> None:
    with pytest.raises(ValueError, match=f"leaf index {count!r} is not a whole number"):
        inclusion_proof(count, LEAVES)
    with pytest.raises(ValueError, match=f"old size {count!r} is not a whole number"):
        consistency_proof(count, LEAVES)


def test_nothing_to_prove_is_an_empty_consistency_proof() -> None:
    assert consistency_proof(0, LEAVES) == []
    assert consistency_proof(8, LEAVES) == []
    assert consistency_proof(0, []) == []


@pytest.mark.parametrize("build", [root, lambda leaves: inclusion_proof(0, leaves)])
@pytest.mark.parametrize("leaf", [b"an entry, not its hash", LEAVES[0].hex(), None])
def test_the_builders_refuse_what_is_not_a_leaf_hash(build: Any, leaf: Any) -> None:
    with pytest.raises(ValueError, match="leaf 1 is not a 32-byte leaf hash"):
        build([LEAVES[0], leaf])


# -- signed tree heads ------------------------------------------------------------------------

# RFC 8032 §7.1, TEST 1: a published Ed25519 key pair.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
KEY = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HEAD = TreeHead(size=8, timestamp_ms=1_700_000_000_000, root=ROOTS[8])


def test_head_bytes_is_tree_head_data_v2() -> None:
    # RFC 9162 §4.10: uint64 timestamp, uint64 tree_size, NodeHash root_hash (opaque<32..2^8-1>,
    # so one length byte), Extension sth_extensions<0..2^16-1> (two length bytes, none here).
    expected = (
        "0000018bcfe56800"  # timestamp 1,700,000,000,000 ms = 0x18B_CFE5_6800
        "0000000000000008"  # tree_size 8
        "20"  # root_hash is 32 bytes long
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"  # the 8 leaves' root
        "0000"  # no extensions
    )
    assert head_bytes(HEAD).hex() == expected


def test_head_bytes_at_the_uint64_edges() -> None:
    head = TreeHead(size=2**64 - 1, timestamp_ms=0, root=b"\xab" * 32)
    expected = (
        "0000000000000000"  # timestamp 0
        "ffffffffffffffff"  # the largest tree_size
        "20" + "ab" * 32 + "0000"
    )
    assert head_bytes(head).hex() == expected


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (TreeHead(size=-1, timestamp_ms=0, root=EMPTY_ROOT), "tree size -1 is not a uint64"),
        (TreeHead(size=2**64, timestamp_ms=0, root=EMPTY_ROOT), "is not a uint64"),
        (TreeHead(size=0, timestamp_ms=-5, root=EMPTY_ROOT), "timestamp -5 is not a uint64"),
        (TreeHead(size=0, timestamp_ms=0, root=EMPTY_ROOT[:31]), "32-byte SHA-256 hash"),
        (TreeHead(size=0, timestamp_ms=0, root=EMPTY_ROOT.hex()), "32-byte SHA-256 hash"),
    ],
)
def test_head_bytes_refuses_what_it_cannot_encode(head: TreeHead, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        head_bytes(head)


def test_the_rfc8032_key_is_the_published_key() -> None:
    assert KEY.public_key().public_bytes_raw() == RFC8032_PUBLIC


def test_a_signed_head_verifies_with_its_key_only() -> None:
    signature = sign_head(HEAD, KEY)
    assert len(signature) == 64
    assert verify_head(HEAD, signature, RFC8032_PUBLIC)
    other_public = OTHER_KEY.public_key().public_bytes_raw()
    assert not verify_head(HEAD, signature, other_public)
    assert not verify_head(HEAD, sign_head(HEAD, OTHER_KEY), RFC8032_PUBLIC)


@pytest.mark.parametrize(
    "changed",
    [
        {"size": 9},
        {"size": 7},
        {"timestamp_ms": 1_700_000_000_001},
        {"root": ROOTS[7]},
        {"root": _flip(ROOTS[8], 31, 1)},
    ],
)
def test_a_changed_head_fails(changed: dict[str, Any]) -> None:
    signature = sign_head(HEAD, KEY)
    assert not verify_head(dataclasses.replace(HEAD, **changed), signature, RFC8032_PUBLIC)


SIGNATURE = sign_head(HEAD, KEY)
BAD_HEADS = {
    "flipped signature": (HEAD, _flip(SIGNATURE, 10, 4), RFC8032_PUBLIC),
    "short signature": (HEAD, SIGNATURE[:63], RFC8032_PUBLIC),
    "long signature": (HEAD, SIGNATURE + b"\x00", RFC8032_PUBLIC),
    "signature as text": (HEAD, SIGNATURE.hex(), RFC8032_PUBLIC),
    "no signature": (HEAD, None, RFC8032_PUBLIC),
    "short key": (HEAD, SIGNATURE, RFC8032_PUBLIC[:31]),
    "long key": (HEAD, SIGNATURE, RFC8032_PUBLIC + b"\x00"),
    "key as text": (HEAD, SIGNATURE, RFC8032_PUBLIC.hex()),
    "key not on the curve": (HEAD, SIGNATURE, b"\xff" * 32),
    "a key object": (HEAD, SIGNATURE, KEY.public_key()),
    "negative size": (TreeHead(size=-1, timestamp_ms=0, root=ROOTS[8]), SIGNATURE, RFC8032_PUBLIC),
    "short root": (TreeHead(size=8, timestamp_ms=0, root=b"\x00"), SIGNATURE, RFC8032_PUBLIC),
    "not a head": ((8, 1_700_000_000_000, ROOTS[8]), SIGNATURE, RFC8032_PUBLIC),
}


@pytest.mark.parametrize("arguments", BAD_HEADS.values(), ids=BAD_HEADS.keys())
def test_verify_head_says_no_without_raising(arguments: tuple[Any, ...]) -> None:
    assert verify_head(*arguments) is False


def test_key_id_is_the_hex_sha256_of_the_raw_key() -> None:
    assert key_id(RFC8032_PUBLIC) == hashlib.sha256(RFC8032_PUBLIC).hexdigest()
    assert len(key_id(RFC8032_PUBLIC)) == 64


@pytest.mark.parametrize("key", [RFC8032_PUBLIC[:31], RFC8032_PUBLIC.hex(), b""])
def test_key_id_refuses_what_is_not_a_raw_key(key: Any) -> None:
    with pytest.raises(ValueError, match="32 raw bytes"):
        key_id(key)
