"""A small, exact membership and claims for integration tests, with the figures they imply."""

import json
from datetime import UTC, date, datetime, time, timedelta

from broker.database import engine
from domain.calendar import SHANGHAI, charge_day, local_date, next_announcement_day, start_of_day
from domain.illnesses import load_catalog
from domain.members import Enrolment
from domain.services import members as member_service

CRITICAL, SENIOR = "critical-illness", "senior-cancer"
TODAY = local_date(datetime.now(UTC))
ANNOUNCE_ON = next_announcement_day(TODAY)
PUBLISH_AT = start_of_day(ANNOUNCE_ON)
CLOSE_AT = start_of_day(charge_day(ANNOUNCE_ON))
DIAGNOSED = TODAY - timedelta(days=10)


def member(
    ref: str, plan: str, age: int, joined_days_ago: int = 300, payer: str | None = None
) -> Enrolment:
    joined_on = TODAY - timedelta(days=joined_days_ago)
    birth = (
        date(DIAGNOSED.year - age, 1, 1)
        if DIAGNOSED.month > 1
        else date(DIAGNOSED.year - age - 1, 1, 1)
    )
    if age >= 60 and plan == CRITICAL:  # joined at 58, now past the exit age
        joined_on = TODAY - timedelta(days=900)
    return Enrolment(
        member_ref=ref,
        plan=plan,
        birth_date=birth,
        sex="F" if ref[-1] in "02468" else "M",
        province="广东",
        joined_at=datetime.combine(joined_on, time(10, 0), SHANGHAI),
        payer_ref=payer,
        name="吴小漫",
    )


def membership(critical: int = 120, senior: int = 10) -> list[Enrolment]:
    rows = [member(f"C{n:04d}", CRITICAL, 30 + n % 25) for n in range(critical)]
    rows += [member(f"S{n:04d}", SENIOR, 62 + n % 5) for n in range(senior)]
    return rows


def submission(sid: str, ref: str, icd10: str, plan: str = CRITICAL, **extra) -> str:
    data = {
        "submission_id": sid,
        "member_ref": ref,
        "plan": plan,
        "icd10": icd10,
        "diagnosed_on": DIAGNOSED.isoformat(),
        "hospital": "广州市第一人民医院",
        "accident": False,
    } | extra
    return json.dumps(data, ensure_ascii=False)


def reviewer_code() -> str:
    illness = next(i for i in load_catalog().covered_by(CRITICAL) if i.decided_by == "reviewer")
    return illness.icd10[0].split("-")[0]


# Member C0005 is 35 (300,000 yuan), C0015 is 45 (100,000), C0006 is 36 (300,000).
CLAIMS = [
    submission("good-1", "C0005", "C73"),
    submission("good-2", "C0015", "I21.0"),
    submission("good-1", "C0005", "C73"),  # the same submission again: one claim
    submission("review-1", "C0006", reviewer_code()),
    submission("senior-1", "S0001", "C34.1", plan=SENIOR),
    submission("unknown-1", "C9999", "C73"),
    submission("uncovered-1", "C0007", "J18.9"),
    json.dumps({"submission_id": "malformed-1", "member_ref": "C0008", "plan": CRITICAL}),
    "not json at all {",
]
EXPECTED_STATES = {
    "good-1": ("scheduled", None, 30_000_000),
    "good-2": ("scheduled", None, 10_000_000),
    "review-1": ("needs_review", None, 30_000_000),
    "senior-1": ("scheduled", None, 10_000_000),
    "unknown-1": ("rejected", "unknown_member", None),
    "uncovered-1": ("rejected", "not_covered", None),
    "malformed-1": ("rejected", "malformed", None),
}
NOW_UTC = datetime.now(UTC)


def review_by_records(session, claim_id: int, now):
    """Review a claim as if the hospital's records confirmed it, with no earlier condition."""
    from domain.records import Condition, Evidence, Reply
    from domain.services.claims import evidence_request, review_claim

    request = evidence_request(session, claim_id)
    found = [Condition(request.icd10, request.diagnosed_on, "active")] if request else []
    return review_claim(session, claim_id, now, Evidence(Reply.FOUND, diagnosis=found))


def enrol(rows) -> None:
    """Enrol members through the import service, as the CLI does; every row must pass."""
    report = member_service.ImportReport()
    member_service.import_members(engine(), enumerate(rows, start=2), report)
    assert report.refused == []
