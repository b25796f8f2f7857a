"""Objections, juries and staff review over HTTP: the 公示 as a CDN would cache it, 我有异议
once per member, the juror exam and votes, and the reviewer's queues (staff only)."""

from datetime import UTC, datetime

from sqlmodel import select

from broker.app import reconfigure
from broker.database import engine
from broker.settings import get_settings
from domain.db import transaction
from domain.models import JuryCase
from tests.integration.api_support import serving
from tests.integration.scenario import (
    CRITICAL,
    enrol,
    member,
    membership,
    reviewer_code,
    submission,
)
from tests.integration.test_disputes import (
    OBJECTING,
    claim_through_rules,
    juror,
    publish,
    state,
)

RIGHT = {"waiting": 1, "announce": 0, "cap": 1, "votes": 2, "fee": 0}


def clock_at(moment: datetime) -> None:
    """Move the API's clock (the rehearsal offset) so that its now is `moment`."""
    days = (moment - datetime.now(UTC)).total_seconds() / 86400
    reconfigure(get_settings().model_copy(update={"api_clock_offset_days": days}))


def test_members_object_once_to_announced_cases_and_a_reviewer_decides(stack, tokens):
    enrol(membership(20, 0))
    claim_through_rules(submission("case-a", "C0005", "C73"))
    claim_through_rules(submission("waiting", "C0006", reviewer_code()))
    publish()
    clock_at(OBJECTING)
    objector, claimant, reviewer = tokens("C0001"), tokens("C0005"), tokens("DR-LI", "reviewer")
    with serving() as api:
        page = api.get(f"/v1/plans/{CRITICAL}/announcement")
        assert page.status_code == 200 and "max-age" in page.headers["cache-control"]
        assert [c["case_ref"] for c in page.json()["cases"]] == ["case-a"]
        assert page.json()["cases"][0]["masked_name"] == "吴*漫"
        tag = page.headers["etag"]
        cached = api.get(f"/v1/plans/{CRITICAL}/announcement", headers={"If-None-Match": tag})
        assert cached.status_code == 304 and cached.headers["etag"] == tag
        assert api.get("/v1/plans/no-such-plan/announcement").status_code == 404

        reason = {"reason": "I saw the applicant at work last week"}
        filed = api.post("/v1/cases/case-a/objections", json=reason, headers=objector)
        assert filed.status_code == 201, filed.text
        assert filed.json()["status"] == "open"
        again = api.post("/v1/cases/case-a/objections", json=reason, headers=objector)
        assert again.status_code == 409 and again.json()["type"].endswith("/already-objected")
        own = api.post("/v1/cases/case-a/objections", json=reason, headers=claimant)
        assert own.status_code == 422 and "own case" in own.json()["detail"]
        unannounced = api.post("/v1/cases/waiting/objections", json=reason, headers=objector)
        assert unannounced.status_code == 404
        assert api.post("/v1/cases/case-a/objections", json={}, headers=objector).status_code == 422
        mine = api.get("/v1/me/objections", headers=objector).json()
        assert [(o["case_ref"], o["status"]) for o in mine] == [("case-a", "open")]
        assert api.get("/v1/me/objections", headers=tokens("C0002")).json() == []
        assert state("case-a")[0] == "objected"

        assert api.get("/v1/review/objections", headers=objector).status_code == 403
        [waiting] = api.get("/v1/review/objections", headers=reviewer).json()
        decision = {"uphold": False, "note": "the applicant was on sick leave"}
        url = f"/v1/review/objections/{waiting['objection_id']}/decision"
        dismissed = api.post(url, json=decision, headers=reviewer)
        assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
        assert api.post(url, json=decision, headers=reviewer).status_code == 409
        assert state("case-a")[0] == "announced"
        assert api.get("/v1/me/objections", headers=objector).json()[0]["status"] == "dismissed"

        queue = api.get("/v1/review/claims", headers=reviewer).json()
        assert [c["submission_id"] for c in queue] == ["waiting"]
        assert api.get("/v1/review/claims", headers=claimant).status_code == 403
        reject = {"approve": False, "reason": "criteria_not_met", "note": "not severe enough"}
        decided = api.post("/v1/review/claims/waiting/decision", json=reject, headers=reviewer)
        assert decided.json() == {
            "submission_id": "waiting",
            "state": "rejected",
            "reason_code": "criteria_not_met",
        }
        twice = api.post("/v1/review/claims/waiting/decision", json=reject, headers=reviewer)
        assert twice.status_code == 409
        assert (
            api.post("/v1/review/claims/nope/decision", json=reject, headers=reviewer).status_code
            == 404
        )


def test_the_applicant_asks_a_jury_and_certified_members_vote_once(stack, tokens):
    enrol(
        [
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            juror("J1", certified=False),
            juror("J2", certified=False),
            juror("SPOUSE", payer="APPLICANT"),
        ]
    )
    claim_through_rules(submission("denied", "APPLICANT", reviewer_code()))
    applicant, j1, j2 = tokens("APPLICANT"), tokens("J1"), tokens("J2")
    with serving() as api:
        reviewer = tokens("DR-LI", "reviewer")
        reject = {"approve": False, "reason": "criteria_not_met"}
        assert (
            api.post("/v1/review/claims/denied/decision", json=reject, headers=reviewer).status_code
            == 200
        )
        seen = api.get("/v1/claims/denied", headers=applicant).json()
        assert seen["reason_code"] == "criteria_not_met" and seen["reason"]
        assert api.post("/v1/claims/denied/jury", headers=j1).status_code == 404  # not theirs
        asked = api.post("/v1/claims/denied/jury", headers=applicant)
        assert asked.status_code == 201, asked.text
        jury_id = asked.json()["jury_id"]
        assert api.post("/v1/claims/denied/jury", headers=applicant).status_code == 422

        [open_case] = api.get("/v1/juries", headers=j1).json()
        assert open_case["jury_id"] == jury_id and open_case["masked_name"] == "吴*漫"
        assert "APPLICANT" not in str(open_case)
        uncertified = api.post(f"/v1/juries/{jury_id}/votes", json={"support": True}, headers=j1)
        assert uncertified.status_code == 422 and "certification" in uncertified.json()["detail"]

        exam = api.get("/v1/juror-exam").json()
        assert "answer" not in str(exam["questions"][0])
        wrong = {q["id"]: (RIGHT[q["id"]] + 1) % 3 for q in exam["questions"]}
        failed = api.post("/v1/me/juror-certification", json={"answers": wrong}, headers=j1)
        assert failed.json()["passed"] is False and failed.json()["certified"] is False
        for headers in (j1, j2):
            passed = api.post(
                "/v1/me/juror-certification", json={"answers": RIGHT}, headers=headers
            )
            assert passed.json() == {"right": 5, "asked": 5, "passed": True, "certified": True}

        vote = f"/v1/juries/{jury_id}/votes"
        assert api.post(vote, json={"support": True}, headers=j1).status_code == 201
        second = api.post(vote, json={"support": False}, headers=j1)
        assert second.status_code == 409 and second.json()["type"].endswith("/already-voted")
        assert api.post(vote, json={"support": False}, headers=j2).status_code == 201
        family = api.post(vote, json={"support": True}, headers=tokens("SPOUSE"))
        assert family.status_code == 422 and "family" in family.json()["detail"]
        assert (
            api.post("/v1/juries/999/votes", json={"support": True}, headers=j1).status_code == 404
        )
    with transaction(engine()) as session:
        case = session.exec(select(JuryCase)).one()
        assert case.status == "open"
