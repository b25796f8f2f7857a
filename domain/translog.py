"""An append-only log's Merkle tree in the shape of RFC 9162 (Certificate Transparency 2.0): roots,
proofs, signed tree heads."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# RFC 9162 carries tree sizes and timestamps as uint64, so nothing larger can be signed or proven.
MAX_UINT64 = 2**64 - 1


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the 0x00 keeps a leaf from passing for an inner node."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (already passed through leaf_hash); EMPTY_ROOT for no leaves."""
    _check_leaves(leaves)
    return _mth(leaves, 0, len(leaves)) if leaves else EMPTY_ROOT


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, the sibling next to the leaf first."""
    _check_leaves(leaves)
    _check_count("leaf index", index)
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    return _path(index, leaves, 0, len(leaves))


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, D[n]) of RFC 9162 §2.1.4.1; empty for old_size 0 or n (nothing to prove)."""
    _check_leaves(leaves)
    _check_count("old size", old_size)
    if not 0 <= old_size <= len(leaves):
        raise ValueError(
            f"old size {old_size} must be between 0 and the tree's {len(leaves)} leaves"
        )
    if old_size in (0, len(leaves)):
        return []
    return _subproof(old_size, leaves, 0, len(leaves), whole_old_tree=True)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does proof take leaf (a leaf hash) at index to root of a tree of size?"""
    if not (_is_uint64(index) and _is_uint64(size) and index < size):
        return False
    if not (_is_hash(leaf) and _is_hash(root) and _are_hashes(proof)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False  # more nodes than the path from this leaf to the root has
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Climb past the levels where this subtree is a left child with no right sibling.
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of new_size with new_root an extension of old_size's?"""
    if not (_is_uint64(old_size) and _is_uint64(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and _are_hashes(proof)):
        return False
    if old_size == 0:
        # Our choice, as the RFC only covers 0 < old_size: every tree extends the empty one, so
        # the proof must be empty, and the old root must be the empty tree's (and so the new root
        # too, when the new tree is empty as well).
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    return _verify_growth(old_size, new_size, old_root, new_root, proof)


@dataclass(frozen=True)
class TreeHead:
    """What a signed tree head commits to: the tree's size, when, and its root."""

    size: int
    timestamp_ms: int  # milliseconds since the epoch, as RFC 9162
    root: bytes


def head_bytes(head: TreeHead) -> bytes:
    """The TLS encoding of RFC 9162 §4.10's TreeHeadDataV2, with no extensions."""
    if not _is_uint64(head.timestamp_ms):
        raise ValueError(f"timestamp {head.timestamp_ms!r} is not a uint64 of milliseconds")
    if not _is_uint64(head.size):
        raise ValueError(f"tree size {head.size!r} is not a uint64")
    if not _is_hash(head.root):
        raise ValueError("the root must be a 32-byte SHA-256 hash")
    return b"".join(
        [
            head.timestamp_ms.to_bytes(8, "big"),
            head.size.to_bytes(8, "big"),
            bytes([HASH_SIZE]),  # root_hash is opaque<32..2^8-1>: a one-byte length first
            head.root,
            b"\x00\x00",  # extensions<0..2^16-1>: a two-byte length, and none follow
        ]
    )


def sign_head(head: TreeHead, key: Ed25519PrivateKey) -> bytes:
    """The log's Ed25519 signature over head_bytes(head)."""
    return key.sign(head_bytes(head))


def verify_head(head: TreeHead, signature: bytes, public_key: bytes) -> bool:
    """Did the holder of public_key (its 32 raw bytes) sign head? False, never an error, if not."""
    if not (isinstance(head, TreeHead) and isinstance(signature, bytes)):
        return False
    if not (isinstance(public_key, bytes) and len(public_key) == 32):
        return False
    try:
        message = head_bytes(head)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (ValueError, InvalidSignature):
        return False
    return True


def key_id(public_key: bytes) -> str:
    """Hex SHA-256 of the raw 32-byte Ed25519 public key, to name the key that signed."""
    if not (isinstance(public_key, bytes) and len(public_key) == 32):
        raise ValueError("an Ed25519 public key is 32 raw bytes")
    return hashlib.sha256(public_key).hexdigest()


def _split(n: int) -> int:
    """The largest power of two below n (n >= 2): where RFC 9162 cuts a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a non-empty range; ranges rather than slices, to copy nothing."""
    if end - start == 1:
        return leaves[start]
    k = _split(end - start)
    return node_hash(_mth(leaves, start, start + k), _mth(leaves, start + k, end))


def _path(m: int, leaves: Sequence[bytes], start: int, end: int) -> list[bytes]:
    """PATH(m, D[start:end])."""
    if end - start == 1:
        return []
    k = _split(end - start)
    if m < k:
        return [*_path(m, leaves, start, start + k), _mth(leaves, start + k, end)]
    return [*_path(m - k, leaves, start + k, end), _mth(leaves, start, start + k)]


def _subproof(
    m: int, leaves: Sequence[bytes], start: int, end: int, whole_old_tree: bool
) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b); b (whole_old_tree) says D[start:start+m] is the old tree
    itself, whose root the verifier already holds and so is left out."""
    if end - start == m:
        return [] if whole_old_tree else [_mth(leaves, start, end)]
    k = _split(end - start)
    if m <= k:
        right = _mth(leaves, start + k, end)
        return [*_subproof(m, leaves, start, start + k, whole_old_tree), right]
    left = _mth(leaves, start, start + k)
    return [*_subproof(m - k, leaves, start + k, end, whole_old_tree=False), left]


def _verify_growth(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Steps 1 to 7 of RFC 9162 §2.1.4.2, for 0 < old_size < new_size."""
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the old tree is a whole subtree, so the proof omits its root
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # more nodes than the new tree has levels
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def _check_leaves(leaves: Sequence[bytes]) -> None:
    """Refuse anything but leaf hashes, so that raw entries are not taken for hashed ones."""
    for position, leaf in enumerate(leaves):
        if not _is_hash(leaf):
            raise ValueError(f"leaf {position} is not a 32-byte leaf hash (see leaf_hash)")


def _check_count(name: str, value: object) -> None:
    # A float or a bool would silently pick some other leaf rather than fail.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is not a whole number")


def _is_uint64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_UINT64


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _are_hashes(proof: object) -> bool:
    # A bytes value is a Sequence too (of ints), so it is refused by name.
    if not isinstance(proof, Sequence) or isinstance(proof, bytes | bytearray | str):
        return False
    return all(_is_hash(node) for node in proof)
