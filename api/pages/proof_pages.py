"""分摊明细's proofs: each charge's proof as the API gives it (the cookie's member, or a family
member they pay for), to download for `huzhu verify` or to check in the page, and the script
that checks it there (static/verify.js, the steps of domain/proofs.verify in WebCrypto)."""

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response

from api import proofs as proofs_api
from api.pages.common import HEADERS, Refusal, in_thread, refused
from api.pages.session import LoginNeeded, viewer
from api.problems import MAX_CYCLE_ID, Problem, problem
from broker.database import engine
from domain.db import transaction
from domain.members import MemberRef
from domain.services import proofs

router = APIRouter(prefix="/app", include_in_schema=False)
STATIC = Path(__file__).parent / "static"
CHARGES = "/app/me/charges"
# The verifier is stored but asked again each time (a 304 while unchanged): a fixed check never
# runs stale from a cache.
SCRIPT_CACHE = "no-cache"
NO_PROOF = "本期暂无可核对的证明"
# A download's name keeps to these characters; the member_ref as it is goes in filename*.
PLAIN_NAME = re.compile(r"[^A-Za-z0-9._-]")


def log_public_key() -> str:
    """The public key (hex) of the log's latest signed head, or "" while the log is empty: the
    page pins each proof to it, since a proof names a key of its own and a forger would sign
    with theirs (分摊明细 shows it)."""
    with transaction(engine()) as session:
        head = proofs.latest_head(session)
    return head.public_key.hex() if head is not None else ""


@cache
def _script(name: str) -> tuple[bytes, str]:
    body = (STATIC / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@router.get("/static/verify.js")
def verify_script(request: Request) -> Response:
    body, tag = _script("verify.js")
    headers = {"ETag": tag, "Cache-Control": SCRIPT_CACHE, "X-Content-Type-Options": "nosniff"}
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get("/me/charges/{cycle_id}/proof.json")
async def proof_file(
    request: Request,
    cycle_id: Annotated[int, PathParam(ge=1, le=MAX_CYCLE_ID)],
    member: Annotated[MemberRef | None, Query()] = None,
    download: bool = False,
) -> Response:
    """The API's GET /v1/me/charges/{cycle_id}/proof for the cookie's member: a file to save
    with download=1 (a refusal is then a page), else the JSON the page's script checks (a
    refusal is then problem+json, which the script words for the member)."""
    who = viewer(request)
    if who is None:
        if download:
            raise LoginNeeded(CHARGES)
        return problem(401, "unauthenticated", "Log in first", "the session has ended", HEADERS)
    try:
        document = await in_thread(proofs_api.my_proof, who, cycle_id, member)
    except Problem as error:
        if download:
            return _refused_page(error, who)
        return problem(error.status, error.kind, error.title, error.detail, HEADERS)
    body = proofs_api.ProofView.model_validate(document).model_dump(mode="json")
    answer = JSONResponse(body, headers=HEADERS)  # the leaf's salt is the member's own
    if download:
        disposition = _attachment(f"huzhu-proof-cycle-{cycle_id}-{member or who.member_ref}.json")
        answer.headers["Content-Disposition"] = disposition
    return answer


def _attachment(name: str) -> str:
    plain = PLAIN_NAME.sub("_", name)
    if plain == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _refused_page(error: Problem, who) -> HTMLResponse:
    if error.kind == "no-proof":
        return refused(Refusal(NO_PROOF, error.detail, error.status), who, CHARGES)
    return refused(Refusal.of(error), who, CHARGES)
