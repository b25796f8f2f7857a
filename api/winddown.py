"""A plan's wind-down: anyone may read its report; staff with the `operator` role schedule it
(the same as `huzhu plan wind-down`)."""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel

from api import clock
from api.access import with_role
from api.auth import Caller
from api.problems import Problem
from api.public import known_plan
from broker.database import engine
from domain.db import transaction
from domain.services import winddown

router = APIRouter()
Operator = Annotated[Caller, Depends(with_role("operator"))]


class WindDownRequest(BaseModel):
    announce_at: AwareDatetime
    end_at: AwareDatetime
    refund_all_shares: bool = False


class PlanEventView(BaseModel):
    at: str
    kind: str
    detail: str


class CycleRef(BaseModel):
    cycle_id: int
    announce_on: date
    charge_on: date


class WindDownReport(BaseModel):
    plan: str
    stage: str
    announce_at: str
    end_at: str
    members_stop_sharing_on: date
    last_covered_day: date
    last_tail_day: date
    refund_all_shares: bool
    members: dict[str, int]
    cases_paid_by_members: int
    aid_shared_by_members_fen: int
    cases_paid_by_platform: int
    aid_paid_by_platform_fen: int
    platform_share_fen: int
    charged_to_members_fen: int
    refunds_paid_fen: int
    refunds_pending_fen: int
    refunds_failed_fen: int
    surplus_left_fen: int
    last_sharing_cycle: CycleRef | None
    claims_open: int
    events: list[PlanEventView]


@router.get("/v1/plans/{plan}/wind-down", tags=["public"], response_model=WindDownReport)
def wind_down_report(plan: str) -> dict[str, Any]:
    """The plan's wind-down: its stage and dates, members by how they left, the cases paid by
    members and by the platform, refunds, and the last cycle the members shared."""
    with transaction(engine()) as session:
        try:
            return winddown.report(session, known_plan(plan))
        except LookupError as error:
            raise Problem(404, "no-wind-down", "The plan is not winding down", str(error)) from None


@router.post(
    "/v1/plans/{plan}/wind-down", tags=["staff"], status_code=201, response_model=WindDownReport
)
def schedule_wind_down(plan: str, body: WindDownRequest, who: Operator) -> dict[str, Any]:
    """Schedule the plan's wind-down; the same request again answers the same wind-down."""
    try:
        with transaction(engine()) as session:
            winddown.schedule(
                session,
                known_plan(plan),
                body.announce_at,
                body.end_at,
                body.refund_all_shares,
                who.member_ref,
                clock.now(),
            )
            return winddown.report(session, plan)
    except winddown.Refused as error:
        raise Problem(
            409, "wind-down-refused", "The wind-down cannot be scheduled", str(error)
        ) from None
