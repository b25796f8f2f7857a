"""A member's proof as a document, and the check of it: their leaf, its path to the cycle's root,
the root's sums against the cycle's published totals, the public cases, the cycle's entry in the
log and the log's signed head. `huzhu verify` runs it; the member's pages run the same steps in
the browser (api/pages/static/verify.js)."""

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain import sumtree, translog
from domain.money import yuan

VERSION = 1
KIND = "huzhu-charge-proof"
MAX_INT64 = 2**63 - 1  # amounts and counts are signed 64-bit in every record


def entry(
    plan: str,
    cycle_id: int,
    announce_on: str,
    share_fen: int,
    charges: sumtree.Node,
    cases: sumtree.Node,
) -> str:
    """The cycle's entry in the log: canonical JSON (sorted keys, no spaces), hashed as it is."""
    fields = {
        "v": VERSION,
        "plan": plan,
        "cycle_id": cycle_id,
        "announce_on": announce_on,
        "share_fen": share_fen,
        "charges_root": charges.hash.hex(),
        "charged_fen": charges.amount,
        "members": charges.count,
        "cases_root": cases.hash.hex(),
        "aid_fen": cases.amount,
        "cases": cases.count,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def node_json(node: sumtree.Node) -> dict[str, Any]:
    return {"hash": node.hash.hex(), "amount_fen": node.amount, "count": node.count}


def head_json(head: translog.TreeHead, signature: bytes, public_key: bytes) -> dict[str, Any]:
    return {
        "size": head.size,
        "timestamp_ms": head.timestamp_ms,
        "root": head.root.hex(),
        "signature": signature.hex(),
        "public_key": public_key.hex(),
        "key_id": translog.key_id(public_key),
    }


STEPS = (
    "format",
    "your leaf",
    "path to the root",
    "totals",
    "cases",
    "log entry",
    "signed head",
    "published head",
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Refused(ValueError):
    """A step of the check failed; the message says which and why."""


def verify(
    document: dict,
    trusted_key: bytes | None = None,
    published_head: dict | None = None,
    consistency: list[str] | None = None,
    expected_member: str | None = None,
    expected_cycle: int | None = None,
) -> list[Check]:
    """Every step of the check, in order; it holds when every step is ok. A step that fails
    stops the ones after it (they would only repeat its cause)."""
    checks: list[Check] = []
    state: dict[str, Any] = {"document": document}
    steps: list[Callable[[dict], str]] = [
        _format,
        lambda s: _leaf(s, expected_member, expected_cycle),
        _path,
        _totals,
        _cases,
        _in_log,
        lambda s: _head(s, trusted_key),
        lambda s: _published(s, published_head, consistency),
    ]
    for name, step in zip(STEPS, steps, strict=True):
        try:
            checks.append(Check(name, True, step(state)))
        # struct.error: a number past 64 bits; RecursionError: JSON nested past reason.
        except (
            Refused,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            struct.error,
            OverflowError,
            RecursionError,
        ) as error:
            reason = str(error) if isinstance(error, Refused) else f"malformed: {error!r}"
            checks.append(Check(name, False, reason))
            break
    return checks


def holds(checks: list[Check]) -> bool:
    """Every step ran and passed (a failed step stops the ones after it)."""
    return [c.name for c in checks] == list(STEPS) and all(c.ok for c in checks)


def _format(state: dict) -> str:
    document = state["document"]
    if document.get("kind") != KIND or not _is_int(document.get("version"), VERSION):
        raise Refused(f"not a {KIND} of version {VERSION}")
    log = document["log"]
    state["entry"] = _entry_fields(log["entry"])
    state["head"] = document["log"]["head"]
    return f"{KIND} v{VERSION}"


def _entry_fields(text: str) -> dict:
    fields = json.loads(text, parse_constant=_not_a_number)
    if not isinstance(fields, dict) or not _is_int(fields.get("v"), VERSION):
        raise Refused("the log entry is not of this version")
    for name in ("cycle_id", "share_fen", "charged_fen", "members", "aid_fen", "cases"):
        if type(fields[name]) is not int or not 0 <= fields[name] <= MAX_INT64:
            raise Refused(f"the log entry's {name} is not a whole number >= 0")
    return fields


def _not_a_number(name: str) -> float:
    raise Refused(f"the log entry holds {name}, which JSON does not have")


def _is_int(value: object, expected: int) -> bool:
    """An int equal to `expected`: not a bool, not a float (True == 1 in Python)."""
    return type(value) is int and value == expected


def _leaf(state: dict, expected_member: str | None, expected_cycle: int | None) -> str:
    leaf, entry_fields = state["document"]["leaf"], state["entry"]
    if expected_member is not None and leaf["member_ref"] != expected_member:
        raise Refused(f"this proof is of {leaf['member_ref']}, not of {expected_member}")
    if expected_cycle is not None and not _is_int(leaf["cycle_id"], expected_cycle):
        raise Refused(f"this proof is of cycle {leaf['cycle_id']}, not of cycle {expected_cycle}")
    amount, share = _whole(leaf["amount_fen"]), entry_fields["share_fen"]
    if not _is_int(leaf["cycle_id"], entry_fields["cycle_id"]):
        raise Refused(f"the leaf is of cycle {leaf['cycle_id']}, the entry of another")
    if not _is_int(leaf.get("count"), 1):
        raise Refused("a member's leaf counts one member")
    if amount > share:
        raise Refused(f"the leaf says {amount} fen, more than the share of {share}")
    salt = bytes.fromhex(leaf["salt"])
    if len(salt) != sumtree.SALT:
        raise Refused(f"the salt is {len(salt)} bytes, not {sumtree.SALT}")
    state["leaf"] = sumtree.charge_leaf(leaf["cycle_id"], amount, salt, leaf["member_ref"])
    return f"{leaf['member_ref']}: {yuan(amount)} yuan ({amount} fen)"


def _path(state: dict) -> str:
    share = state["entry"]["share_fen"]
    steps = []
    for number, step in enumerate(state["document"]["path"], start=1):
        before = [_node(n, share) for n in step["before"]]
        after = [_node(n, share) for n in step["after"]]
        if not 1 <= len(before) + len(after) < sumtree.FANOUT:
            raise Refused(f"level {number} has {len(before) + len(after)} siblings")
        steps.append(sumtree.Step(before, after))
    top = sumtree.climb(state["leaf"], steps)
    claimed = _node(state["document"]["root"], share)
    if top != claimed:
        raise Refused("the path does not lead to the root it names")
    state["root"] = top
    return f"{len(steps)} levels to {top.hash.hex()[:16]}…"


def _node(data: dict, share: int) -> sumtree.Node:
    """A sibling or root as sent; no sum may be negative or more than its members' shares (an
    understated or padded sibling would otherwise pass)."""
    node = sumtree.Node(bytes.fromhex(data["hash"]), _whole(data["amount_fen"]), data["count"])
    if len(node.hash) != 32 or type(node.count) is not int or not 1 <= node.count <= MAX_INT64:
        raise Refused("a node has a malformed hash or a count below one")
    if node.amount > node.count * share:
        raise Refused(f"a node sums {node.amount} fen for {node.count} members, above the share")
    return node


def _whole(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_INT64:
        raise Refused(f"{value!r} is not a whole number of fen >= 0")
    return value


def _totals(state: dict) -> str:
    root, entry_fields = state["root"], state["entry"]
    if root.hash.hex() != entry_fields["charges_root"]:
        raise Refused("the root is not the one in the cycle's log entry")
    if (root.amount, root.count) != (entry_fields["charged_fen"], entry_fields["members"]):
        raise Refused(
            f"the root sums {root.amount} fen over {root.count} members; the cycle published "
            f"{entry_fields['charged_fen']} fen over {entry_fields['members']}"
        )
    return f"{yuan(root.amount)} yuan from {root.count:,} members, as published"


def _cases(state: dict) -> str:
    entry_fields = state["entry"]
    leaves = [
        sumtree.case_leaf(entry_fields["cycle_id"], _whole(c["amount_fen"]), c["case_ref"]).record
        for c in state["document"]["cases"]
    ]
    top = sumtree.root(leaves)
    if top.hash.hex() != entry_fields["cases_root"]:
        raise Refused("the listed cases do not make the cases root of the log entry")
    if (top.amount, top.count) != (entry_fields["aid_fen"], entry_fields["cases"]):
        raise Refused("the cases do not add up to the cycle's aid")
    return f"{top.count} cases, {yuan(top.amount)} yuan of aid"


def _in_log(state: dict) -> str:
    log, head = state["document"]["log"], state["head"]
    proof = [bytes.fromhex(h) for h in log["inclusion"]]
    leaf = translog.leaf_hash(log["entry"].encode())
    index = log["leaf_index"]
    if not translog.verify_inclusion(index, head["size"], leaf, proof, bytes.fromhex(head["root"])):
        raise Refused(f"entry {index} is not in the log of size {head['size']}")
    fields = state["entry"]
    return (
        f"entry {index} of {head['size']}: {fields['plan']} cycle {fields['cycle_id']}, "
        f"announced {fields['announce_on']}"
    )


def _tree_head(head: dict) -> translog.TreeHead:
    return translog.TreeHead(head["size"], head["timestamp_ms"], bytes.fromhex(head["root"]))


def _head(state: dict, trusted_key: bytes | None) -> str:
    head = state["head"]
    key = bytes.fromhex(head["public_key"])
    if trusted_key is not None and key != trusted_key:
        raise Refused(f"the head is signed with key {translog.key_id(key)[:16]}…, not yours")
    if not translog.verify_head(_tree_head(head), bytes.fromhex(head["signature"]), key):
        raise Refused("the head's signature does not verify")
    pinned = "pinned" if trusted_key is not None else "as the file names it; pin it with --key"
    return f"key {translog.key_id(key)[:16]}… ({pinned})"


def _published(state: dict, published: dict | None, consistency: list[str] | None) -> str:
    """The head in the file against one published since: the same, or a later one that the
    log proves contains it (a rewritten root breaks the consistency proof)."""
    if published is None:
        return "no published head given (--head)"
    ours = state["head"]
    if published["public_key"] != ours["public_key"]:
        raise Refused("the published head is signed with another key")
    theirs = _tree_head(published)
    signature, key = bytes.fromhex(published["signature"]), bytes.fromhex(published["public_key"])
    if not translog.verify_head(theirs, signature, key):
        raise Refused("the published head's signature does not verify")
    old, new = _tree_head(ours), theirs
    if old.size > new.size:
        old, new = new, old
    if old.size == new.size:
        if old.root != new.root:
            raise Refused("two signed heads of one size, two roots: the log was rewritten")
        return f"the same head, size {new.size}"
    if consistency is None:
        raise Refused(
            f"the published head is of size {theirs.size}, the file's of {ours['size']}: give "
            f"--consistency from /v1/log/consistency?from={old.size}&to={new.size}"
        )
    proof = [bytes.fromhex(h) for h in consistency]
    if not translog.verify_consistency(old.size, new.size, old.root, new.root, proof):
        raise Refused(f"the log of size {new.size} does not contain the one of size {old.size}")
    return f"size {old.size} is contained in the published size {new.size}"
