"""Objections, juries and staff review over HTTP: the 公示 as a CDN would cache it, 我有异议
once per member, the juror exam and votes, and the reviewer's queues (staff only)."""

from datetime import UTC, datetime

from sqlmodel import select

from broker.app import reconfigure
from broker.database import engine
from broker.settings import get_settings
from domain.db import transaction
from domain.models import Claim, JuryCase
from domain.services import claims as claim_service
from domain.services import disputes as dispute_service
from tests.integration.api_support import at_once, serving
from tests.integration.scenario import (
    CRITICAL,
    NOW_UTC,
    SENIOR,
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
from tests.integration.test_money_edges import A_ON, collect_all_but, run_cycle

RIGHT = {"waiting": 1, "announce": 0, "cap": 1, "votes": 2, "fee": 0}


def clock_at(moment: datetime) -> None:
    """Move the API's clock (the rehearsal offset) so that its now is `moment`."""
    days = (moment - datetime.now(UTC)).total_seconds() / 86400
    reconfigure(get_settings().model_copy(update={"api_clock_offset_days": days}))


def test_a_new_app_builds_its_own_announcement_page(stack, tokens):  # tokens: the key
    """The page an app holds for a few seconds is that app's: another app (a test's, or one
    restarted on another database) reads the 公示 afresh."""
    enrol(membership(20, 0))
    claim_through_rules(submission("case-a", "C0005", "C73"))
    publish()
    with serving() as api:
        before = api.get(f"/v1/plans/{CRITICAL}/announcement").json()
    with transaction(engine()) as session:
        claim = session.exec(select(Claim).where(Claim.submission_id == "case-a")).one()
        claim.amount_fen = (claim.amount_fen or 0) - 100
    with serving() as api:
        after = api.get(f"/v1/plans/{CRITICAL}/announcement").json()
    assert after["cases"][0]["amount_fen"] == before["cases"][0]["amount_fen"] - 100


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
        first = api.post("/v1/review/claims/waiting/decision", json=reject, headers=reviewer)
        assert first.json()["state"] == "awaiting_second_review"  # a rejection: four eyes
        alone = api.post("/v1/review/claims/waiting/decision", json=reject, headers=reviewer)
        assert alone.status_code == 409 and "four eyes" in alone.json()["detail"]
        [waiting] = api.get("/v1/review/claims", headers=reviewer).json()
        assert (waiting["stage"], waiting["first_reviewer"]) == ("second", "DR-LI")
        assert waiting["first_decision"] == "reject: criteria_not_met"
        checker = tokens("DR-WANG", "reviewer")
        decided = api.post("/v1/review/claims/waiting/decision", json=reject, headers=checker)
        assert decided.json() == {
            "submission_id": "waiting",
            "state": "rejected",
            "reason_code": "criteria_not_met",
        }
        twice = api.post("/v1/review/claims/waiting/decision", json=reject, headers=checker)
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
        for who in (reviewer, tokens("DR-WANG", "reviewer")):  # a rejection rests on two people
            decided = api.post("/v1/review/claims/denied/decision", json=reject, headers=who)
            assert decided.status_code == 200, decided.text
        assert decided.json()["state"] == "rejected"
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


def jury_on_rejected(member_ref: str) -> int:
    """A claim of `member_ref` rejected by a reviewer, and the applicant's jury asked."""
    claim_through_rules(submission("denied", member_ref, reviewer_code()))
    with transaction(engine()) as session:
        claim_service.decide(session, "denied", False, "dr-li", NOW_UTC)
    with transaction(engine()) as session:
        case = dispute_service.request_jury(session, "denied", NOW_UTC)
        assert case.id is not None
        return case.id


def test_family_cannot_vote_whatever_plan_or_generation_links_them(sqlite_stack, tokens):
    """The payer is certified in this plan but pays from their row in another; a grandchild
    is paid by the applicant's dependant. Neither is a stranger to the case."""
    enrol(
        [
            member("PAYER", SENIOR, 62, joined_days_ago=400),
            juror("PAYER", age=45),
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400, payer="PAYER"),
            juror("CHILD", age=30, payer="APPLICANT"),
            juror("GRANDCHILD", age=20, payer="CHILD"),
            juror("STRANGER"),
        ]
    )
    jury = jury_on_rejected("APPLICANT")
    with serving() as api:
        for relative in ("PAYER", "GRANDCHILD"):
            cast = api.post(
                f"/v1/juries/{jury}/votes", json={"support": True}, headers=tokens(relative)
            )
            assert cast.status_code == 422 and "family" in cast.json()["detail"], relative
        cast = api.post(
            f"/v1/juries/{jury}/votes", json={"support": True}, headers=tokens("STRANGER")
        )
        assert cast.status_code == 201, cast.text


def test_one_vote_and_one_objection_however_many_are_sent_at_once(stack, tokens):
    enrol([*membership(20, 0), juror("J1"), member("APPLICANT", CRITICAL, 35, 400)])
    claim_through_rules(submission("case-a", "C0005", "C73"))
    publish()
    jury = jury_on_rejected("APPLICANT")
    voter, objector = tokens("J1"), tokens("C0001")
    with serving() as api:
        votes = at_once(
            6,
            lambda i: (
                api.post(
                    f"/v1/juries/{jury}/votes", json={"support": i % 2 == 0}, headers=voter
                ).status_code
            ),
        )
        clock_at(OBJECTING)
        objections = at_once(
            6,
            lambda i: (
                api.post(
                    "/v1/cases/case-a/objections", json={"reason": f"reason {i}"}, headers=objector
                ).status_code
            ),
        )
    assert sorted(votes) == [201] + [409] * 5
    assert sorted(objections) == [201] + [409] * 5


def test_family_at_any_depth_cannot_vote(sqlite_stack, tokens):
    """An import may link payers eleven generations deep: the last is family still."""
    chain = [member("G0", CRITICAL, 35, joined_days_ago=400)]
    chain += [juror(f"G{n}", age=40, payer=f"G{n - 1}") for n in range(1, 11)]
    enrol([*chain, juror("STRANGER")])
    jury = jury_on_rejected("G0")
    with serving() as api:
        for ref in ("G1", "G10"):
            cast = api.post(f"/v1/juries/{jury}/votes", json={"support": True}, headers=tokens(ref))
            assert cast.status_code == 422, ref


def test_a_juror_whose_debit_failed_is_not_a_paying_member(sqlite_stack, tokens):
    enrol([*membership(6, 0), juror("J1"), juror("J2"), member("APPLICANT", CRITICAL, 35, 400)])
    claim_through_rules(submission("first", "C0005", "C73"), NOW_UTC)
    assert len(collect_all_but(run_cycle(CRITICAL, A_ON), {"J1"})) == 1  # J1's debit failed
    jury = jury_on_rejected("APPLICANT")
    with serving() as api:
        vote = f"/v1/juries/{jury}/votes"
        refused = api.post(vote, json={"support": True}, headers=tokens("J1"))
        assert refused.status_code == 422 and "paying" in refused.json()["detail"]
        assert api.post(vote, json={"support": True}, headers=tokens("J2")).status_code == 201
