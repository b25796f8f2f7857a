"""The members' API (FastAPI): public plan rules, and each member's own claims (submitted and
followed). Handlers are a
few lines around domain services; every error is RFC 9457 problem+json."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import Body, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlmodel import Session, select
from starlette.exceptions import HTTPException

from api.auth import Caller, NotConfigured, caller_of, public_key
from broker.database import engine
from broker.settings import get_settings
from broker.submit import submit_claim
from domain.claims import REASON_FOR_MEMBERS, Reason
from domain.db import transaction
from domain.models import Member
from domain.plans import load_plans
from domain.services import claims as claim_service
from domain.services import requests

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://huzhu.example/problems/"
bearer = HTTPBearer(auto_error=False)


class Problem(Exception):
    def __init__(self, status: int, kind: str, title: str, detail: str = "") -> None:
        super().__init__(detail or title)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail


def problem(status: int, kind: str, title: str, detail: str = "", **extra) -> JSONResponse:
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    return JSONResponse(body | extra, status_code=status, media_type=PROBLEM)


def create_app() -> FastAPI:
    """The API; refuses to start without a key to check members' tokens with."""
    public_key(get_settings())  # NotConfigured on a fleet without the platform's key
    app = FastAPI(title="Huzhu members' API", version="1")
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(HTTPException, _on_http)
    _routes(app)
    _claims_routes(app)
    return app


async def _on_problem(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Problem)
    return problem(error.status, error.kind, error.title, error.detail)


async def _on_invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
    ]
    return problem(422, "invalid-request", "The request is not valid", "see errors", errors=fields)


async def _on_http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return problem(error.status_code, f"http-{error.status_code}", str(error.detail))


def caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None:
        raise Problem(401, "unauthenticated", "A bearer token is needed", "log in through the app")
    try:
        return caller_of(credentials.credentials, get_settings())
    except (jwt.InvalidTokenError, NotConfigured) as error:
        raise Problem(401, "unauthenticated", "The token is not valid", str(error)) from None


class PlanRules(BaseModel):
    code: str
    name_zh: str
    name_en: str
    join_ages: tuple[int, int]
    exit_age: int
    waiting_days: int
    per_patient_cap_fen: int
    annual_cap_fen: int
    fee_rate_percent: float
    objection_days: int
    payout_days: int


class Accepted(BaseModel):
    submission_id: str
    status_url: str


class ClaimEvent(BaseModel):
    at: str
    to_state: str
    reason: str | None


class ClaimStatus(BaseModel):
    submission_id: str
    plan: str | None
    state: str
    reason_code: str | None
    reason: str | None
    amount_fen: int | None
    history: list[ClaimEvent]


def _routes(app: FastAPI) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        with transaction(engine()) as session:
            session.exec(select(Member.id).limit(1)).first()
        return {"status": "ok"}

    @app.get("/v1/plans")
    def plans() -> list[PlanRules]:
        return [
            PlanRules(
                code=p.code,
                name_zh=p.name_zh,
                name_en=p.name_en,
                join_ages=(p.min_join_age_years, p.max_join_age_years),
                exit_age=p.exit_age_years,
                waiting_days=p.waiting_days,
                per_patient_cap_fen=p.per_patient_cap_fen,
                annual_cap_fen=p.annual_cap_fen,
                fee_rate_percent=p.fee_rate_bp / 100,
                objection_days=p.objection_days,
                payout_days=p.payout_days,
            )
            for p in load_plans().values()
        ]

    @app.get("/v1/claims/{submission_id}")
    def claim(submission_id: str, who: Annotated[Caller, Depends(caller)]) -> ClaimStatus:
        with transaction(engine()) as session:
            try:
                view = claim_service.claim_history(session, submission_id)
            except claim_service.ClaimNotFound:
                view = None
            if view is None or not (
                _may_read(session, who, view.claim.member_id)
                or requests.sent_by(session, who.member_ref, submission_id)
            ):
                # Another member's claim is not found either: existence is not leaked.
                raise Problem(404, "not-found", "No such claim", f"no claim {submission_id}")
            found = view.claim
            return ClaimStatus(
                submission_id=found.submission_id,
                plan=found.plan,
                state=found.state,
                reason_code=found.reason_code,
                reason=REASON_FOR_MEMBERS.get(Reason(found.reason_code))
                if found.reason_code
                else None,
                amount_fen=found.amount_fen,
                history=[
                    ClaimEvent(at=e.at.isoformat(), to_state=e.to_state, reason=e.reason)
                    for e in view.events
                ],
            )


def _claims_routes(app: FastAPI) -> None:
    @app.post("/v1/claims", status_code=202, responses={202: {"model": Accepted}})
    def submit(
        body: Annotated[dict[str, Any], Body()],
        idempotency_key: Annotated[
            str, Header(alias="Idempotency-Key", min_length=1, max_length=128)
        ],
        who: Annotated[Caller, Depends(caller)],
        response: Response,
    ) -> Accepted:
        """Apply for aid: stored as sent, then reviewed by the workers. The same
        Idempotency-Key with the same body answers the same; with another body, 422."""
        raw = json.dumps(body, ensure_ascii=False, sort_keys=True)
        with transaction(engine()) as session:
            if not _may_claim_for(session, who, body.get("member_ref"), body.get("plan")):
                raise Problem(
                    422,
                    "not-your-member",
                    "You may claim for yourself and the members you pay for",
                    "member_ref and plan must name your own membership or a dependant's",
                )
        submission_id = claim_service.submission_key(raw)

        def remember(session: Session) -> None:
            requests.remember(
                session, who.member_ref, idempotency_key, raw.encode(), submission_id, _now()
            )

        try:
            submit_claim(raw, also=remember)
        except requests.KeyReused as error:
            title = "The key was used for another request"
            raise Problem(422, "idempotency-key-reused", title, str(error)) from None
        location = f"/v1/claims/{submission_id}"
        response.headers["Location"] = location
        return Accepted(submission_id=submission_id, status_url=location)


def _now() -> datetime:
    return datetime.now(UTC)


def _may_claim_for(session: Session, who: Caller, member_ref: object, plan: object) -> bool:
    if not isinstance(member_ref, str) or not isinstance(plan, str):
        return False
    claimant = session.exec(
        select(Member).where(Member.member_ref == member_ref, Member.plan == plan)
    ).first()
    return claimant is not None and _may_read(session, who, claimant.id)


def _may_read(session: Session, who: Caller, member_id: int | None) -> bool:
    """The claimant, and the member who pays for them."""
    if member_id is None:
        return False
    member = session.get(Member, member_id)
    if member is None:
        return False
    if member.member_ref == who.member_ref:
        return True
    payer = session.get(Member, member.payer_id) if member.payer_id else None
    return payer is not None and payer.member_ref == who.member_ref
