"""A member's whole way through the API, as the app drives it, with a real worker on each stack:
join, pass the waiting period, claim (twice under one key: one claim), follow it to the 公示;
another member objects; a rejected applicant's jury gets votes; after the close the charges
and the member card show what each paid. Operators' steps are the `huzhu` CLI."""

from datetime import UTC, datetime, timedelta

from broker.app import reconfigure
from broker.settings import get_settings
from tests.integration.api_support import serving
from tests.integration.scenario import CLOSE_AT, CRITICAL, DIAGNOSED, PUBLISH_AT, reviewer_code
from tests.integration.support import huzhu, wait_until
from tests.integration.test_api_disputes import RIGHT
from tests.integration.test_api_members import applicant

# The waiting period (90 days) is behind them, and more than the 30 days after it that a claim
# would be flagged in (domain.flags.early).
JOINED = datetime.now(UTC) - timedelta(days=150)
OBJECTING = PUBLISH_AT + timedelta(days=1)


def clock_at(moment: datetime) -> None:
    days = (moment - datetime.now(UTC)).total_seconds() / 86400
    reconfigure(get_settings().model_copy(update={"api_clock_offset_days": days}))


def claim(sid: str, ref: str, icd10: str) -> dict:
    return {
        "submission_id": sid,
        "member_ref": ref,
        "plan": CRITICAL,
        "icd10": icd10,
        "diagnosed_on": DIAGNOSED.isoformat(),
        "hospital": "杭州市第一人民医院",
        "accident": False,
    }


def test_a_members_way_through_the_api(stack, worker, tokens):
    patient, neighbour, denied = tokens("PATIENT"), tokens("NEIGHBOUR"), tokens("DENIED")
    jurors = [tokens(f"JUROR{n}") for n in range(3)]
    reviewer = tokens("DR-WANG", "reviewer")
    log = stack.settings.data_dir / "worker.log"
    with serving() as api:
        clock_at(JOINED)
        for headers in (patient, neighbour, denied, *jurors):
            joined = api.post("/v1/enrolments", json=applicant(), headers=headers)
            assert joined.status_code == 201, joined.text
        card = api.get("/v1/me", headers=patient).json()
        assert card["memberships"][0]["waiting_ends_on"] < datetime.now(UTC).date().isoformat()

        clock_at(datetime.now(UTC))  # five months later
        once = {"Idempotency-Key": "claim-tap-1"}
        for _ in range(2):
            sent = api.post(
                "/v1/claims", json=claim("p-1", "PATIENT", "C73"), headers=patient | once
            )
            assert sent.status_code == 202 and sent.headers["location"] == "/v1/claims/p-1"
        review = {"Idempotency-Key": "claim-tap-2"}
        sent = api.post(
            "/v1/claims", json=claim("d-1", "DENIED", reviewer_code()), headers=denied | review
        )
        assert sent.status_code == 202

        def state_of(sid: str, headers) -> str:
            return api.get(f"/v1/claims/{sid}", headers=headers).json()["state"]

        wait_until(lambda: state_of("p-1", patient) == "scheduled", 90, "p-1 scheduled", log)
        wait_until(lambda: state_of("d-1", denied) == "needs_review", 90, "d-1 waiting", log)
        assert api.get("/v1/claims/p-1", headers=neighbour).status_code == 404

        huzhu(stack, "cycle", "publish", "--plan", CRITICAL, "--at", PUBLISH_AT.isoformat())
        assert state_of("p-1", patient) == "announced"
        page = api.get(f"/v1/plans/{CRITICAL}/announcement").json()
        assert [c["case_ref"] for c in page["cases"]] == ["p-1"]
        assert page["sharing_members"] == 6

        clock_at(OBJECTING)
        objection = {"reason": "the same illness was treated before joining"}
        filed = api.post("/v1/cases/p-1/objections", json=objection, headers=neighbour)
        assert filed.status_code == 201, filed.text
        [waiting] = api.get("/v1/review/objections", headers=reviewer).json()
        dismiss = {"uphold": False, "note": "the record shows the first diagnosis after joining"}
        url = f"/v1/review/objections/{waiting['objection_id']}/decision"
        assert api.post(url, json=dismiss, headers=reviewer).json()["status"] == "dismissed"

        reject = {"approve": False, "reason": "criteria_not_met", "note": "stage not reached"}
        first = api.post("/v1/review/claims/d-1/decision", json=reject, headers=reviewer)
        assert first.json().get("state") == "awaiting_second_review", first.text
        status = api.get("/v1/claims/d-1", headers=denied).json()
        assert status["decision_due_at"] and status["state"] == "awaiting_second_review"
        checker = tokens("DR-LI", "reviewer")
        decided = api.post("/v1/review/claims/d-1/decision", json=reject, headers=checker)
        assert decided.json()["state"] == "rejected", decided.text
        assert api.get("/v1/claims/d-1", headers=denied).json()["decision_due_at"] is None
        jury = api.post("/v1/claims/d-1/jury", headers=denied)
        assert jury.status_code == 201, jury.text
        votes = f"/v1/juries/{jury.json()['jury_id']}/votes"
        for headers in jurors:
            exam = api.post("/v1/me/juror-certification", json={"answers": RIGHT}, headers=headers)
            assert exam.json()["certified"] is True
            assert api.post(votes, json={"support": True}, headers=headers).status_code == 201

        huzhu(stack, "cycle", "close", "--plan", CRITICAL, "--at", CLOSE_AT.isoformat())
        figures = api.get(f"/v1/plans/{CRITICAL}/cycles/{page['cycle_id']}").json()
        assert figures["status"] == "closed" and figures["sharing_members"] == 6
        [line] = api.get("/v1/me/charges", headers=neighbour).json()["charges"]
        assert line["amount_fen"] == figures["share_fen"] > 0 and line["paid_by"] == "NEIGHBOUR"
        assert line["aid_fen"] == figures["aid_fen"] == 30_000_000
        card = api.get("/v1/me", headers=neighbour).json()
        assert card["members_helped"] == 1
        assert card["total_shared_fen"] in (0, line["amount_fen"])  # collected, or still due
        assert api.get("/v1/me/objections", headers=neighbour).json()[0]["status"] == "dismissed"
