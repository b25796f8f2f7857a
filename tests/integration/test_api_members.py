"""Members' own records over HTTP: joining with the consent and the health declaration, family,
leaving, the member card and the charges, and nobody else's."""

from api.auth import mint
from broker.settings import get_settings
from tests.integration.api_support import bearer, serving
from tests.integration.scenario import CRITICAL, SENIOR, enrol, membership, submission
from tests.integration.test_disputes import claim_through_rules, close, publish

ANSWERS = {q: False for q in ("cancer", "heart", "stroke", "organs", "treatment")}


def applicant(**changes) -> dict:
    consent = {"version": "2026-12-01", "agreed": True}
    return {
        "plan": CRITICAL,
        "birth_date": "1990-05-01",
        "sex": "F",
        "province": "浙江",
        "name": "吴小漫",
        "health_answers": ANSWERS,
        "debit_consent": consent,
    } | changes


def token(ref: str) -> dict[str, str]:
    return bearer(mint(get_settings(), ref, set()))


def test_joining_needs_the_consent_and_a_clean_declaration_and_says_why_not(sqlite_stack):
    me = token("NEW")
    with serving() as api:
        terms = api.get("/v1/terms").json()
        assert terms["consent_version"] == "2026-12-01"
        assert {q["id"] for q in terms["health_questions"]} == set(ANSWERS)
        refusals = {
            "consent-required": applicant(debit_consent={"version": "2026-12-01", "agreed": False}),
            "health-declaration-not-passed": applicant(health_answers=ANSWERS | {"heart": True}),
            "health-declaration-incomplete": applicant(health_answers={"cancer": False}),
            "age-outside-plan": applicant(birth_date="1950-01-01"),
        }
        for code, body in refusals.items():
            answer = api.post("/v1/enrolments", json=body, headers=me)
            assert answer.status_code == 422, (code, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"].endswith("/" + code)
        stale = applicant(debit_consent={"version": "2020-01-01", "agreed": True})
        assert (
            api.post("/v1/enrolments", json=stale, headers=me)
            .json()["type"]
            .endswith("/consent-required")
        )
        assert api.get("/v1/me", headers=me).status_code == 404  # nothing stored by a refusal
        joined = api.post("/v1/enrolments", json=applicant(), headers=me)
        assert joined.status_code == 201, joined.text
        assert joined.headers["location"] == "/v1/me"
        view = joined.json()
        assert view["debit_mandate"]["version"] == "2026-12-01"
        assert view["days_a_member"] == 0 and view["paid_by"] == "NEW"
        again = api.post("/v1/enrolments", json=applicant(), headers=me)
        assert again.status_code == 409 and again.json()["type"].endswith("/already-a-member")
        assert api.post("/v1/enrolments", json=applicant()).status_code == 401


def test_a_payer_enrols_family_who_leave_first_and_no_one_else_may_touch_them(sqlite_stack):
    payer, other = token("PARENT"), token("STRANGER")
    child = applicant(member_ref="KID", birth_date="2015-03-03", sex="M")
    with serving() as api:
        assert api.post("/v1/enrolments", json=applicant(), headers=payer).status_code == 201
        assert api.post("/v1/enrolments", json=applicant(), headers=other).status_code == 201
        added = api.post("/v1/me/dependants", json=child, headers=payer)
        assert added.status_code == 201, added.text
        assert added.json()["paid_by"] == "PARENT"
        assert added.json()["debit_mandate"]["given_by"] == "PARENT"
        card = api.get("/v1/me", headers=payer).json()
        assert [d["member_ref"] for d in card["dependants"]] == ["KID"]
        assert api.get("/v1/me", headers=other).json()["dependants"] == []
        kid_out = {"plan": CRITICAL, "member_ref": "KID"}
        assert api.post("/v1/me/exit", json=kid_out, headers=other).status_code == 404
        early = api.post("/v1/me/exit", json={"plan": CRITICAL}, headers=payer)
        assert early.status_code == 409 and "family member" in early.json()["detail"]
        assert api.post("/v1/me/exit", json=kid_out, headers=payer).status_code == 200
        left = api.post("/v1/me/exit", json={"plan": CRITICAL}, headers=payer)
        assert left.status_code == 200, left.text
        assert left.json()["still_owes_fen"] == 0
        assert left.json()["effective_at"] > card["memberships"][0]["joined_at"]
        again = api.post("/v1/me/exit", json={"plan": CRITICAL}, headers=payer)
        assert again.status_code == 409 and "already left" in again.json()["detail"]
        assert api.post("/v1/me/exit", json={"plan": SENIOR}, headers=payer).status_code == 404


def test_the_card_and_the_charges_show_what_the_member_and_family_paid(stack, tokens):
    enrol(membership(30, 0))
    payer, other = tokens("PAYER"), tokens("C0001")
    child = applicant(member_ref="CHILD", birth_date="2016-01-01")
    with serving() as api:
        assert api.post("/v1/enrolments", json=applicant(), headers=payer).status_code == 201
        assert api.post("/v1/me/dependants", json=child, headers=payer).status_code == 201
        claim_through_rules(submission("case-1", "C0003", "C73"))
        publish()
        cycle = close()
        assert cycle is not None and cycle.share_fen > 0
        page = api.get("/v1/me/charges", headers=payer).json()
        lines = {line["member_ref"]: line for line in page["charges"]}
        assert set(lines) == {"PAYER", "CHILD"} and page["next"] is None
        for line in lines.values():
            assert line["cycle_id"] == cycle.id and line["paid_by"] == "PAYER"
            assert line["amount_fen"] == cycle.share_fen == line["share_fen"]
            assert (line["aid_fen"], line["fee_fen"]) == (cycle.aid_fen, cycle.fee_fen)
            assert line["sharing_members"] == cycle.sharing_members == 32
            assert line["debit_status"] == "due" and line["capped"] is False
        card = api.get("/v1/me", headers=payer).json()
        assert card["members_helped"] == 1 and card["total_shared_fen"] == 0  # not collected yet
        theirs = api.get("/v1/me/charges", headers=other).json()["charges"]
        assert [line["member_ref"] for line in theirs] == ["C0001"]
        figures = api.get(f"/v1/plans/{CRITICAL}/cycles/{cycle.id}").json()
        assert figures["charged_fen"] == cycle.charged_fen and figures["cases"] == 1
        assert api.get(f"/v1/plans/{SENIOR}/cycles/{cycle.id}").status_code == 404
        assert api.get("/v1/me/charges?limit=0", headers=payer).status_code == 422


def test_the_access_log_names_the_member_and_nothing_personal(sqlite_stack, caplog):
    caplog.set_level("INFO", logger="huzhu.api.access")
    with serving() as api:
        assert api.post("/v1/enrolments", json=applicant(), headers=token("LOGGED")).is_success
        assert api.get("/v1/me", headers=token("LOGGED")).is_success
        assert api.get("/v1/plans").is_success
    lines = [r.getMessage() for r in caplog.records if r.name == "huzhu.api.access"]
    assert any(line.startswith("POST /v1/enrolments 201") for line in lines), lines
    assert all("member=LOGGED" in line for line in lines if "/v1/me" in line)
    assert any(line.startswith("GET /v1/plans 200") and "member=-" in line for line in lines)
    assert not any(secret in " ".join(lines) for secret in ("吴小漫", "1990-05-01", "浙江"))
