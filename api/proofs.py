"""The proofs members check: their own charge's proof, a cycle's roots and cases, the log's signed
heads and its consistency proofs. Everything a verifier needs, and nothing it must trust us for."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from api.access import Member_
from api.problems import MAX_CYCLE_ID, Problem, not_found
from api.public import CLOSED_CYCLE_CACHE, cacheable, known_plan
from broker.database import engine
from broker.proofkeys import proof_secret
from broker.settings import get_settings
from domain.db import transaction
from domain.members import MemberRef
from domain.models import SharingCycle
from domain.services import proofs, statements

router = APIRouter()
MAX_LOG_SIZE = 2**62


class NodeView(BaseModel):
    hash: str = Field(description="SHA-256, hex")
    amount_fen: int
    count: int


class StepView(BaseModel):
    """One level up: the siblings before and after the node; the parent hashes 0x01 and each
    child's hash, amount and count in this order."""

    before: list[NodeView]
    after: list[NodeView]


class LeafView(BaseModel):
    cycle_id: int
    member_ref: str
    salt: str = Field(description="16 bytes, hex: the leaf's secret salt, yours only")
    amount_fen: int
    count: int


class CaseView(BaseModel):
    case_ref: str
    amount_fen: int


class HeadView(BaseModel):
    """A signed tree head (RFC 9162): Ed25519 over TreeHeadDataV2(timestamp, size, root)."""

    size: int
    timestamp_ms: int
    root: str
    signature: str
    public_key: str
    key_id: str


class LogView(BaseModel):
    leaf_index: int
    entry: str = Field(description="The cycle's entry: canonical JSON, hashed byte for byte")
    inclusion: list[str] = Field(description="RFC 9162 inclusion proof under `head`")
    head: HeadView


class ProofView(BaseModel):
    kind: str
    version: int
    leaf: LeafView
    path: list[StepView]
    root: NodeView
    cases: list[CaseView]
    log: LogView


class CycleRoots(BaseModel):
    plan: str
    cycle_id: int
    charges_root: NodeView
    cases: list[CaseView] = Field(description="The public cases tree's leaves, as the 公示 lists")
    log: LogView


class Consistency(BaseModel):
    from_size: int = Field(serialization_alias="from")
    to_size: int = Field(serialization_alias="to")
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex")
    from_head: HeadView
    to_head: HeadView


def _no_proof(error: proofs.NoProof) -> Problem:
    return Problem(404, "no-proof", "There is no proof for this", str(error))


@router.get("/v1/me/charges/{cycle_id}/proof", tags=["members"], response_model=ProofView)
def my_proof(
    who: Member_,
    cycle_id: Annotated[int, Path(ge=1, le=MAX_CYCLE_ID)],
    member: Annotated[
        MemberRef | None, Query(description="A family member the caller pays for")
    ] = None,
) -> dict[str, Any]:
    """The proof that the caller (or a family member they pay for) was counted in the cycle
    with what they were charged: their leaf, its path to the cycle's root, the cases, and the
    cycle's entry in the log with the latest signed head. `huzhu verify` checks it offline."""
    secret = proof_secret(get_settings())
    with transaction(engine()) as session:
        cycle = session.get(SharingCycle, cycle_id)
        ref = member or who.member_ref
        rows = [
            m
            for m in statements.family_rows(session, who.member_ref)
            if m.member_ref == ref and cycle is not None and m.plan == cycle.plan
        ]
        if cycle is None or not rows:
            raise not_found(f"charge of {ref} in cycle {cycle_id}")
        try:
            return proofs.member_proof(session, cycle, rows[0], secret)
        except proofs.NoProof as error:
            raise _no_proof(error) from None


@router.get(
    "/v1/plans/{plan}/cycles/{cycle_id}/root",
    tags=["public"],
    response_model=CycleRoots,
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
def cycle_roots(plan: str, cycle_id: Annotated[int, Path(ge=1, le=MAX_CYCLE_ID)], request: Request):
    """A closed cycle's charges root (its sums: charged fen and members), its public cases
    (their tree's root is in the entry) and its entry in the log, proven under the latest head."""
    with transaction(engine()) as session:
        cycle = session.get(SharingCycle, cycle_id)
        if cycle is None or cycle.plan != known_plan(plan):
            raise not_found(f"cycle {cycle_id} of {plan}")
        try:
            body = CycleRoots.model_validate(proofs.cycle_document(session, cycle))
        except proofs.NoProof as error:
            raise _no_proof(error) from None
    # Short-lived: the log's latest head in it moves on with every close.
    return cacheable(body, request, CLOSED_CYCLE_CACHE)


@router.get("/v1/log/heads/latest", tags=["public"], response_model=HeadView)
def latest_head() -> dict[str, Any]:
    """The log's latest signed tree head. Keep it: a later head must prove it contains it."""
    with transaction(engine()) as session:
        head = proofs.latest_head(session)
    if head is None:
        raise Problem(404, "empty-log", "The log is empty", "no cycle has closed yet")
    return proofs.head_document(head)


@router.get("/v1/log/consistency", tags=["public"], response_model=Consistency)
def consistency(
    old: Annotated[int, Query(alias="from", ge=1, le=MAX_LOG_SIZE, description="A size")],
    new: Annotated[int, Query(alias="to", ge=1, le=MAX_LOG_SIZE, description="A later size")],
) -> dict[str, Any]:
    """RFC 9162's proof that the log of size `from` is the start of the log of size `to`, with
    both signed heads: a rewritten past root cannot pass."""
    if old > new:
        raise Problem(422, "bad-range", "`from` is after `to`", f"{old} > {new}")
    with transaction(engine()) as session:
        heads = {h: proofs.head_at(session, h) for h in (old, new)}
        if None in heads.values():
            raise not_found(f"signed head of size {old if heads[old] is None else new}")
        proof = proofs.consistency(session, old, new)
    return {
        "from_size": old,
        "to_size": new,
        "proof": [h.hex() for h in proof],
        "from_head": proofs.head_document(heads[old]),
        "to_head": proofs.head_document(heads[new]),
    }
