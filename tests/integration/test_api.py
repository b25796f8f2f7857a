"""The members' API over real HTTP on loopback (uvicorn in a thread): public rules, a member's
own claims and nobody else's, and tokens checked as the platform signs them."""

import json
from datetime import UTC, datetime, timedelta

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.app import create_app
from api.auth import NotConfigured, development_key, mint
from broker.app import reconfigure
from broker.database import engine
from broker.settings import get_settings
from domain.db import transaction
from domain.services import claims as claim_service
from tests.integration.api_support import bearer, serving
from tests.integration.scenario import CRITICAL, NOW_UTC, enrol, member, submission
from tests.integration.support import wait_until
from tests.integration.test_api_members import applicant
from tests.integration.test_disputes import claim_through_rules


@pytest.fixture
def members(sqlite_stack):
    enrol(
        [
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            member("CHILD", CRITICAL, 8, joined_days_ago=400, payer="APPLICANT"),
            member("OTHER", CRITICAL, 40, joined_days_ago=400),
        ]
    )
    claim_through_rules(submission("mine", "APPLICANT", "C73"))
    claim_through_rules(submission("childs", "CHILD", "C73"))


def test_a_member_reads_their_claims_and_their_childs_but_no_one_elses(members):
    own = bearer(mint(get_settings(), "APPLICANT", set()))
    other = bearer(mint(get_settings(), "OTHER", set()))
    with serving() as api:
        assert api.get("/healthz").json() == {"status": "ok"}
        [critical, *_] = api.get("/v1/plans").json()
        assert (critical["code"], critical["waiting_days"], critical["fee_rate_percent"]) == (
            CRITICAL,
            90,
            8.0,
        )
        mine = api.get("/v1/claims/mine", headers=own)
        assert mine.status_code == 200
        body = mine.json()
        assert (body["state"], body["amount_fen"]) == ("scheduled", 30_000_000)
        assert [e["to_state"] for e in body["history"]] == [
            "received",
            "under_review",
            "approved",
            "scheduled",
        ]
        assert api.get("/v1/claims/childs", headers=own).status_code == 200  # the payer
        for path in ("/v1/claims/mine", "/v1/claims/childs", "/v1/claims/nothing"):
            refused = api.get(path, headers=other)
            # Another member's claim is not found, exactly like one that does not exist.
            assert refused.status_code == 404, path
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"].endswith("/not-found")


def token_with(**changes) -> str:
    now = datetime.now(UTC)
    claims = {"sub": "APPLICANT", "aud": "huzhu", "exp": now + timedelta(minutes=5)} | changes
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, development_key(get_settings()), algorithm="EdDSA")


def test_tokens_expired_for_another_audience_unsigned_or_missing_are_refused(members):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {"sub": "APPLICANT", "aud": "huzhu", "exp": datetime.now(UTC) + timedelta(minutes=5)},
        stranger,
        algorithm="RS256",
    )
    refused = {
        "none": {},
        "garbage": bearer("not.a.token"),
        "expired": bearer(token_with(exp=datetime.now(UTC) - timedelta(seconds=5))),
        "other audience": bearer(token_with(aud="someone-else")),
        "no subject": bearer(token_with(sub=None)),
        "signed by a stranger": bearer(forged),
    }
    with serving() as api:
        assert api.get("/v1/claims/mine", headers=bearer(token_with())).status_code == 200
        for why, headers in refused.items():
            answer = api.get("/v1/claims/mine", headers=headers)
            assert answer.status_code == 401, why
            assert answer.json()["type"].endswith("/unauthenticated"), why


def test_the_fleet_trusts_the_platforms_key_and_never_a_development_key(postgres_stack, tmp_path):
    with pytest.raises(NotConfigured, match="HUZHU_API_PUBLIC_KEY_FILE is not set"):
        create_app()
    with pytest.raises(NotConfigured, match="embedded default only"):
        mint(get_settings(), "APPLICANT", set())
    platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "platform.pem"
    key_file.write_bytes(
        platform.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    reconfigure(get_settings().model_copy(update={"api_public_key_file": key_file}))
    enrol([member("APPLICANT", CRITICAL, 35, joined_days_ago=400)])
    claim_through_rules(submission("mine", "APPLICANT", "C73"))
    claims = {"sub": "APPLICANT", "aud": "huzhu", "exp": datetime.now(UTC) + timedelta(minutes=5)}
    with serving() as api:
        answer = api.get("/v1/claims/mine", headers=bearer(jwt.encode(claims, platform, "RS256")))
        assert answer.status_code == 200 and answer.json()["state"] == "scheduled"


def claim_body(submission_id: str, ref: str = "APPLICANT") -> dict:
    return json.loads(submission(submission_id, ref, "C73"))


def test_a_claim_sent_twice_under_one_key_is_one_claim_and_another_body_is_refused(
    stack, worker, tokens
):
    enrol(
        [
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            member("OTHER", CRITICAL, 40, joined_days_ago=400),
        ]
    )
    own = tokens("APPLICANT")
    with serving() as api:
        key = {"Idempotency-Key": "tap-1"}
        first = api.post("/v1/claims", json=claim_body("app-1"), headers=own | key)
        again = api.post("/v1/claims", json=claim_body("app-1"), headers=own | key)
        assert first.status_code == again.status_code == 202, first.text
        assert first.headers["location"] == again.headers["location"] == "/v1/claims/app-1"
        other_body = api.post("/v1/claims", json=claim_body("app-2"), headers=own | key)
        assert other_body.status_code == 422
        assert other_body.json()["type"].endswith("/idempotency-key-reused")
        for_someone_else = api.post(
            "/v1/claims", json=claim_body("app-3", "OTHER"), headers=own | {"Idempotency-Key": "k3"}
        )
        assert for_someone_else.status_code == 422
        no_key = api.post("/v1/claims", json=claim_body("app-4"), headers=own)
        assert no_key.status_code == 422
        assert no_key.json()["errors"][0]["field"] == "header.Idempotency-Key"

        def scheduled():
            answer = api.get("/v1/claims/app-1", headers=own).json()
            return answer["state"] == "scheduled"

        wait_until(scheduled, 60, "the claim reviewed by the worker")
    with transaction(engine()) as session:
        assert claim_service.counts_by_state(session) == {"scheduled": 1}


def test_writes_over_the_limit_are_answered_429_for_that_member_only(stack, tokens):
    reconfigure(get_settings().model_copy(update={"api_write_limit": "3/minute"}))
    enrol([member("BUSY", CRITICAL, 35), member("CALM", CRITICAL, 40)])
    exam = {"answers": {"waiting": 1}}
    with serving() as api:
        for _ in range(3):
            answer = api.post("/v1/me/juror-certification", json=exam, headers=tokens("BUSY"))
            assert answer.status_code == 200, answer.text
        over = api.post("/v1/me/juror-certification", json=exam, headers=tokens("BUSY"))
        assert over.status_code == 429
        assert over.json()["type"].endswith("/too-many-requests")
        assert 1 <= int(over.headers["retry-after"]) <= 61
        calm = api.post("/v1/me/juror-certification", json=exam, headers=tokens("CALM"))
        assert calm.status_code == 200
        assert api.get("/v1/me", headers=tokens("BUSY")).status_code == 200  # reads are not


def test_a_bug_is_a_500_problem_without_a_stack_trace(sqlite_stack):
    app = create_app()

    def broken() -> None:
        raise RuntimeError("a secret detail of member 吴小漫")

    app.add_api_route("/broken", broken)
    with serving(app) as api:
        answer = api.get("/broken")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("/internal")
    assert "吴小漫" not in answer.text and "Traceback" not in answer.text


def test_a_401_names_the_bearer_scheme(sqlite_stack):
    with serving() as api:
        missing = api.get("/v1/me")
        bad = api.get("/v1/me", headers=bearer("not.a.token"))
    assert missing.headers["www-authenticate"] == 'Bearer realm="huzhu"'
    assert bad.headers["www-authenticate"] == 'Bearer realm="huzhu", error="invalid_token"'


def test_another_applications_submission_id_is_refused_and_reveals_nothing(members):
    other = bearer(mint(get_settings(), "OTHER", set()))
    with serving() as api:
        taken = api.post(
            "/v1/claims", json=claim_body("mine", "OTHER"), headers=other | {"Idempotency-Key": "t"}
        )
        assert taken.status_code == 409, taken.text
        assert taken.json()["type"].endswith("/submission-id-taken")
        assert api.get("/v1/claims/mine", headers=other).status_code == 404
        fresh = api.post(
            "/v1/claims",
            json=claim_body("own-1", "OTHER"),
            headers=other | {"Idempotency-Key": "t"},
        )
        assert fresh.status_code == 202  # the refused request left the key unused


def test_a_claim_not_yet_matched_to_a_member_is_followed_by_its_claimant_only(members):
    """Before intake has matched a claim (or when it cannot: no submission id), the member
    its text names may follow it, and still may once the key names another request."""
    own, other = (bearer(mint(get_settings(), ref, set())) for ref in ("APPLICANT", "OTHER"))
    unkeyed = claim_body("unused")
    del unkeyed["submission_id"]
    with serving() as api:
        sent = api.post("/v1/claims", json=unkeyed, headers=own | {"Idempotency-Key": "k"})
        assert sent.status_code == 202, sent.text
        url = sent.headers["location"]
        assert api.get(url, headers=own).json()["state"] == "received"
        assert api.get(url, headers=other).status_code == 404
        later = get_settings().model_copy(update={"api_clock_offset_days": 1.1})
        reconfigure(later)  # the key has expired: it may name a new claim
        reused = api.post(
            "/v1/claims", json=claim_body("next-1"), headers=own | {"Idempotency-Key": "k"}
        )
        assert reused.status_code == 202 and reused.headers["location"] != url
        assert api.get(url, headers=own).status_code == 200


def test_a_request_still_in_flight_under_the_key_is_a_409(postgres_stack, tokens):
    enrol([member("APPLICANT", CRITICAL, 35, joined_days_ago=400)])
    own = tokens("APPLICANT")
    url = postgres_stack.settings.database_url.replace("+psycopg", "")
    with serving() as api, psycopg.connect(url) as in_flight:
        # Another API worker handling the same member's key holds its lock until it commits.
        in_flight.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("api:APPLICANT:tap-9",)
        )
        busy = api.post(
            "/v1/claims", json=claim_body("app-9"), headers=own | {"Idempotency-Key": "tap-9"}
        )
        assert busy.status_code == 409 and busy.headers["retry-after"] == "1"
        assert busy.json()["type"].endswith("/request-in-flight")
        in_flight.rollback()
        done = api.post(
            "/v1/claims", json=claim_body("app-9"), headers=own | {"Idempotency-Key": "tap-9"}
        )
        assert done.status_code == 202, done.text
    with transaction(engine()) as session:
        assert claim_service.counts_by_state(session) == {"received": 1}  # no worker here


def test_enrolling_someone_later_opens_none_of_their_old_claims(sqlite_stack, tokens):
    """A claim from another channel names a person who is no member; a member who enrols that
    person afterwards does not read it."""
    enrol([member("SNOOP", CRITICAL, 40, joined_days_ago=400)])
    raw = json.dumps({"submission_id": "ghost-1", "member_ref": "GHOST", "plan": CRITICAL})
    with transaction(engine()) as session:
        claim_service.record_submission(session, raw, datetime.now(UTC))
    snoop = tokens("SNOOP")
    with serving() as api:
        assert api.get("/v1/claims/ghost-1", headers=snoop).status_code == 404
        kid = applicant(member_ref="GHOST", birth_date="2015-01-01")
        assert api.post("/v1/me/dependants", json=kid, headers=snoop).status_code == 201
        assert api.get("/v1/claims/ghost-1", headers=snoop).status_code == 404


def test_a_stored_claim_nested_too_deep_to_parse_is_not_found_rather_than_a_bug(
    sqlite_stack, tokens
):
    enrol([member("ANY", CRITICAL, 35)])
    deep = "[" * 5000 + "]" * 5000
    raw = f'{{"member_ref": "ANY", "plan": "{CRITICAL}", "x": {deep}}}'
    with transaction(engine()) as session:
        claim_service.record_submission(session, raw, NOW_UTC)
    with serving() as api:
        url = f"/v1/claims/{claim_service.submission_key(raw)}"
        assert api.get(url, headers=tokens("ANY")).status_code == 404


def test_control_characters_anywhere_are_a_clear_answer_never_a_500(stack, tokens):
    """PostgreSQL cannot even compare a NUL: every path and field that reaches a query is
    checked first."""
    me = tokens("ODD")
    nul_claims = [
        {"member_ref": "x\u0000", "plan": CRITICAL},
        {"member_ref": "ODD", "plan": "c\u0000"},
        {"member_ref": "ODD", "plan": CRITICAL, "submission_id": "a\u0000"},
    ]
    with serving() as api:
        joined = api.post("/v1/enrolments", json=applicant(), headers=me)
        assert joined.status_code == 201
        answers = [
            api.post("/v1/claims", json=body, headers=me | {"Idempotency-Key": f"n{n}"})
            for n, body in enumerate(nul_claims)
        ] + [
            api.get("/v1/claims/a%00b", headers=me),
            api.post("/v1/claims/a%00b/jury", headers=me),
            api.post("/v1/cases/a%00b/objections", json={"reason": "a reason"}, headers=me),
            api.post("/v1/me/exit", json={"plan": CRITICAL, "member_ref": "a\u0000"}, headers=me),
            api.post(
                "/v1/me/dependants", json=applicant(member_ref="NN", name="a\u0000"), headers=me
            ),
            api.post("/v1/me/juror-certification", json={"answers": {"a\u0000": 1}}, headers=me),
            api.get("/v1/plans/a%00/announcement"),
        ]
    assert [a.status_code for a in answers if a.status_code >= 500] == []
    # 200: the exam marks an unknown question wrong.
    assert {a.status_code for a in answers} <= {200, 202, 404, 422}, [a.text for a in answers]
