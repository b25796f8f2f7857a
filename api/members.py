"""Members' own records: join (with the auto-debit consent), enrol family, leave, the member
card and the charges of every cycle."""

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session

from api import clock
from api.access import Member_
from api.problems import MAX_CYCLE_ID, Problem, not_found
from api.public import WindDownNotice, announced_wind_downs
from api.throttle import Throttled
from broker.database import engine
from domain.calendar import local_date
from domain.db import transaction
from domain.members import Enrolment, MemberRef, Name, Province
from domain.models import Member
from domain.plans import PlanCode
from domain.services import members as member_service
from domain.services import statements
from domain.terms import consent_refusal, health_declaration, load_terms

router = APIRouter(tags=["members"])
# Refusals that name a member who exists already; the others are the applicant's to change.
CONFLICTS = {"already-a-member", "member-ref-taken"}


class Question(BaseModel):
    id: str
    text_zh: str
    text_en: str


class JoinTerms(BaseModel):
    consent_version: str
    consent_zh: str
    consent_en: str
    health_questions: list[Question]


class Consent(BaseModel):
    """The auto-debit consent as the member gave it: never assumed, never pre-ticked."""

    version: str = Field(max_length=32)
    agreed: bool


class Applicant(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)  # as the import reads its rows

    plan: PlanCode
    birth_date: date
    sex: Literal["M", "F"]
    province: Province
    name: Name | None = None
    health_answers: dict[str, bool] = Field(
        description="Each health question's id (GET /v1/terms) and the answer; any yes refuses."
    )
    debit_consent: Consent


class Dependant(Applicant):
    member_ref: MemberRef = Field(
        description="The family member's own id on the platform (the one their token carries)."
    )


class DebitMandate(BaseModel):
    version: str
    consented_at: datetime
    given_by: str


class MembershipView(BaseModel):
    member_ref: str
    plan: str
    joined_at: datetime
    waiting_ends_on: date
    days_a_member: int
    exited_at: datetime | None
    exit_reason: str | None
    paid_by: str
    jury_certified: bool
    debit_mandate: DebitMandate | None


class MemberCard(BaseModel):
    member_ref: str
    memberships: list[MembershipView]
    dependants: list[MembershipView]
    members_helped: int
    total_shared_fen: int
    archived_cycles: int
    wind_downs: list[WindDownNotice] = Field(
        description="Wind-downs announced of the plans on this card (the caller's or family's)."
    )


class ExitRequest(BaseModel):
    plan: PlanCode
    member_ref: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="A dependant's; default the caller."
    )


class StillShared(BaseModel):
    cycle_id: int
    announce_on: date
    charge_on: date
    expected_share_fen: int


class ExitAnswer(BaseModel):
    member_ref: str
    plan: str
    effective_at: datetime
    still_owes_fen: int
    still_shares_in: list[StillShared]


class ChargeView(BaseModel):
    cycle_id: int
    plan: str
    announce_on: date
    charge_on: date
    share_fen: int
    aid_fen: int
    fee_fen: int
    surplus_in_fen: int
    sharing_members: int
    cases: int
    member_ref: str
    amount_fen: int
    capped: bool
    subsidy_fen: int
    paid_by: str
    debit_status: str
    debit_attempts: int
    collected_fen: int
    debited_at: datetime | None


class ChargesPage(BaseModel):
    charges: list[ChargeView]
    next: str | None = Field(description="The next (older) page's URL, if there is one.")
    archived_cycles: list[int]
    wind_downs: list[WindDownNotice] = Field(
        description="Wind-downs announced of the plans these charges are of."
    )


@router.get("/v1/terms", tags=["public"])
def terms() -> JoinTerms:
    """What joining asks: the auto-debit consent's text and version, and the health questions."""
    found = load_terms()
    return JoinTerms(
        consent_version=found.consent_version,
        consent_zh=found.consent_zh,
        consent_en=found.consent_en,
        health_questions=[
            Question(id=q.id, text_zh=q.text_zh, text_en=q.text_en) for q in found.health_questions
        ],
    )


@router.post("/v1/enrolments", status_code=201, dependencies=Throttled)
def join(body: Applicant, who: Member_, response: Response) -> MembershipView:
    """Join a plan. Refusals (ages, the health declaration, no consent, a member already)
    answer 422 (409 for a member already) with the coded reason."""
    view = _enrol(body, who.member_ref, who.member_ref)
    response.headers["Location"] = "/v1/me"
    return view


@router.post("/v1/me/dependants", status_code=201, dependencies=Throttled)
def enrol_dependant(body: Dependant, who: Member_, response: Response) -> MembershipView:
    """Enrol a family member whose shares the caller pays (the caller's consent covers them)."""
    view = _enrol(body, body.member_ref, who.member_ref)
    response.headers["Location"] = "/v1/me"
    return view


def _enrol(body: Applicant, member_ref: str, payer_ref: str) -> MembershipView:
    found = load_terms()
    if refusal := consent_refusal(found, body.debit_consent.version, body.debit_consent.agreed):
        raise Problem(422, "consent-required", "The auto-debit consent is needed", refusal)
    try:
        declared = health_declaration(found, body.health_answers)
    except ValueError as error:
        title = "Answer every question"
        raise Problem(422, "health-declaration-incomplete", title, str(error)) from None
    try:
        applicant = Enrolment(
            member_ref=member_ref,
            plan=body.plan,
            birth_date=body.birth_date,
            sex=body.sex,
            province=body.province,
            name=body.name,
            joined_at=clock.now(),
            payer_ref=payer_ref if isinstance(body, Dependant) else None,
            health_declaration=declared,
        )
    except ValidationError as error:  # the token's member_ref: the body's fields passed already
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        detail = f"{field}: {problem['msg']}"
        raise Problem(422, "invalid-field", "A field is invalid", detail) from None
    with transaction(engine()) as session:
        try:
            member = member_service.enrol(session, applicant, found.consent_version, payer_ref)
        except member_service.Refused as error:
            status = 409 if error.code in CONFLICTS else 422
            raise Problem(status, error.code, "You cannot join", str(error)) from None
        return _view(session, member)


def _view(session: Session, member: Member) -> MembershipView:
    return _membership(statements.card_row(session, member, _today()))


def _membership(row: statements.Membership) -> MembershipView:
    m, consent = row.member, row.consent
    return MembershipView(
        member_ref=m.member_ref,
        plan=m.plan,
        joined_at=m.joined_at,
        waiting_ends_on=row.waiting_ends_on,
        days_a_member=row.days_a_member,
        exited_at=m.exited_at,
        exit_reason=m.exit_reason,
        paid_by=row.payer_ref or m.member_ref,
        jury_certified=m.jury_certified,
        debit_mandate=DebitMandate(
            version=consent.version, consented_at=consent.consented_at, given_by=consent.given_by
        )
        if consent
        else None,
    )


@router.get("/v1/me")
def me(who: Member_) -> MemberCard:
    """The member card: plans, waiting period, days a member, members helped, total shared,
    the debit mandate, and the family the caller pays for."""
    with transaction(engine()) as session:
        found = statements.card(session, who.member_ref, _today())
        plans = {m.member.plan for m in found.memberships + found.dependants}
        endings = announced_wind_downs(session, plans, clock.now())
    if not found.memberships:
        raise not_found(f"membership of {who.member_ref}: join with POST /v1/enrolments")
    return MemberCard(
        member_ref=who.member_ref,
        memberships=[_membership(m) for m in found.memberships],
        dependants=[_membership(m) for m in found.dependants],
        members_helped=found.members_helped,
        total_shared_fen=found.total_shared_fen,
        archived_cycles=found.archived_cycles,
        wind_downs=endings,
    )


@router.post("/v1/me/exit", dependencies=Throttled)
def leave(body: ExitRequest, who: Member_) -> ExitAnswer:
    """Leave a plan (or take a dependant out): effective at 00:00 the next day, family first;
    the answer says what is still owed and which announced cycles are still shared."""
    member_ref = body.member_ref or who.member_ref
    with transaction(engine()) as session:
        family = statements.family_rows(session, who.member_ref)
        if not any(m.member_ref == member_ref and m.plan == body.plan for m in family):
            raise not_found(f"membership of {member_ref} in {body.plan}")
        try:
            member = member_service.exit_member(session, body.plan, member_ref, clock.now())
        except ValueError as error:
            raise Problem(409, "cannot-leave", "The exit is refused", str(error)) from None
        owed, cycles = statements.still_owed(session, member)
        assert member.exited_at is not None
        return ExitAnswer(
            member_ref=member_ref,
            plan=body.plan,
            effective_at=member.exited_at,
            still_owes_fen=owed,
            still_shares_in=[
                StillShared(
                    cycle_id=c.id or 0,
                    announce_on=c.announce_on,
                    charge_on=c.charge_on,
                    expected_share_fen=c.share_fen,
                )
                for c in cycles
            ],
        )


@router.get("/v1/me/charges")
def my_charges(
    who: Member_,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_CYCLE_ID, description="A cycle id: older cycles only.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="Cycles per page.")] = 12,
) -> ChargesPage:
    """Every cycle's charge of the caller and their family, newest first: the share and its
    inputs, what was charged (capped or not), who paid, the debit's status and attempts."""
    with transaction(engine()) as session:
        page = statements.charges(session, who.member_ref, before, limit)
        plans = {m.plan for m in statements.family_rows(session, who.member_ref)}
        endings = announced_wind_downs(session, plans, clock.now())
    return ChargesPage(
        charges=[
            ChargeView(
                cycle_id=line.cycle.id or 0,
                plan=line.cycle.plan,
                announce_on=line.cycle.announce_on,
                charge_on=line.cycle.charge_on,
                share_fen=line.cycle.share_fen,
                aid_fen=line.cycle.aid_fen,
                fee_fen=line.cycle.fee_fen,
                surplus_in_fen=line.cycle.surplus_in_fen,
                sharing_members=line.cycle.sharing_members,
                cases=line.cycle.cases,
                member_ref=line.member_ref,
                amount_fen=line.charge.amount_fen,
                capped=line.charge.subsidy_fen > 0,
                subsidy_fen=line.charge.subsidy_fen,
                paid_by=line.paid_by,
                debit_status=line.charge.debit_status,
                debit_attempts=line.charge.debit_attempts,
                collected_fen=line.charge.collected_fen,
                debited_at=line.charge.debited_at,
            )
            for line in page.lines
        ],
        next=f"/v1/me/charges?before={page.next_before}&limit={limit}"
        if page.next_before
        else None,
        archived_cycles=page.archived_cycles,
        wind_downs=endings,
    )


def _today() -> date:
    return local_date(clock.now())
