"""GET /v1/me/claims over HTTP (both stacks): the caller's claims and their dependants', newest
first, in plain words, with the jury asked or whether one may be; nobody else's."""

import json
from datetime import datetime, timedelta

from broker.database import engine
from domain.claims import REASON_FOR_MEMBERS, Reason
from domain.db import transaction
from domain.services import claims as claim_service
from domain.services import disputes as dispute_service
from tests.integration.api_support import serving
from tests.integration.scenario import (
    CRITICAL,
    NOW_UTC,
    enrol,
    member,
    reviewer_code,
    submission,
)
from tests.integration.test_api_disputes import clock_at
from tests.integration.test_disputes import claim_through_rules

FAMILY = [
    member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
    member("CHILD", CRITICAL, 8, joined_days_ago=400, payer="APPLICANT"),
    member("OTHER", CRITICAL, 40, joined_days_ago=400),
]


def listed(answer) -> list[tuple[str, str, str]]:
    assert answer.status_code == 200, answer.text
    return [(c["submission_id"], c["member_ref"], c["state"]) for c in answer.json()]


def test_a_member_lists_their_own_and_their_dependants_claims_newest_first(stack, tokens):
    enrol(FAMILY)
    claim_through_rules(submission("own-1", "APPLICANT", "C73"), NOW_UTC - timedelta(days=3))
    claim_through_rules(submission("child-1", "CHILD", "C73"), NOW_UTC - timedelta(days=2))
    claim_through_rules(submission("others-1", "OTHER", "C73"), NOW_UTC - timedelta(days=1))
    claim_through_rules(submission("own-2", "APPLICANT", "C73"), NOW_UTC - timedelta(hours=1))
    # Malformed (no diagnosis): intake never matches it to a member, so it is not listed,
    # though its claimant follows it at its own URL.
    unmatched = json.dumps({"submission_id": "bare-1", "member_ref": "APPLICANT", "plan": CRITICAL})
    claim_through_rules(unmatched, NOW_UTC)
    payer, child, other = tokens("APPLICANT"), tokens("CHILD"), tokens("OTHER")
    with serving() as api:
        mine = api.get("/v1/me/claims", headers=payer)
        assert listed(mine) == [
            ("own-2", "APPLICANT", "rejected"),
            ("child-1", "CHILD", "scheduled"),
            ("own-1", "APPLICANT", "scheduled"),
        ]
        duplicate, childs, first = mine.json()
        assert duplicate["reason_code"] == "duplicate"
        assert duplicate["reason"] == REASON_FOR_MEMBERS[Reason.DUPLICATE]
        assert duplicate["amount_fen"] is None and duplicate["decided_at"] is not None
        assert (first["plan"], first["amount_fen"], first["reason"]) == (CRITICAL, 30_000_000, None)
        received = [datetime.fromisoformat(c["received_at"]) for c in (first, childs, duplicate)]
        assert received == [NOW_UTC - timedelta(days=d) for d in (3, 2, 1 / 24)]
        for line in mine.json():
            assert line["jury"] is None and line["may_ask_jury"] is False  # not for a jury
        assert api.get("/v1/claims/bare-1", headers=payer).json()["reason_code"] == "malformed"

        # A dependant reads their own, not their payer's; another member only theirs.
        assert listed(api.get("/v1/me/claims", headers=child)) == [
            ("child-1", "CHILD", "scheduled")
        ]
        assert listed(api.get("/v1/me/claims", headers=other)) == [
            ("others-1", "OTHER", "scheduled")
        ]

        newest = api.get("/v1/me/claims", params={"limit": 2}, headers=payer)
        assert [c["submission_id"] for c in newest.json()] == ["own-2", "child-1"]
        for bad in (0, 101, -1, "ten"):
            refused = api.get("/v1/me/claims", params={"limit": bad}, headers=payer)
            assert refused.status_code == 422, bad
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["errors"][0]["field"] == "query.limit"
        assert api.get("/v1/me/claims").status_code == 401


def test_a_rejected_claim_may_go_to_a_jury_and_then_shows_it(stack, tokens):
    enrol([*FAMILY, member("LATE", CRITICAL, 40, joined_days_ago=400)])
    for sid, ref in (("denied", "CHILD"), ("late", "LATE")):
        claim_through_rules(submission(sid, ref, reviewer_code()))
        with transaction(engine()) as session:
            claim_service.decide(session, sid, False, "dr-li", NOW_UTC)
    payer = tokens("APPLICANT")
    with serving() as api:
        [denied] = api.get("/v1/me/claims", headers=payer).json()
        assert (denied["submission_id"], denied["member_ref"]) == ("denied", "CHILD")
        assert denied["reason"] == REASON_FOR_MEMBERS[Reason.CRITERIA_NOT_MET]
        assert denied["may_ask_jury"] is True and denied["jury"] is None

        asked = api.post("/v1/claims/denied/jury", headers=payer)  # the payer asks for the child
        assert asked.status_code == 201, asked.text
        [denied] = api.get("/v1/me/claims", headers=payer).json()
        assert denied["may_ask_jury"] is False
        assert denied["jury"] == {
            "jury_id": asked.json()["jury_id"],
            "status": "open",
            "closes_at": asked.json()["closes_at"],
            "approved": None,
        }
        assert api.get("/v1/me/claims", headers=tokens("CHILD")).json()[0]["jury"] is not None
        one = api.get("/v1/claims/denied", headers=payer).json()  # the claim's own URL agrees
        assert (one["jury"], one["may_ask_jury"]) == (denied["jury"], False)

        with transaction(engine()) as session:  # no juror voted: not approved
            dispute_service.close_due_juries(session, NOW_UTC + timedelta(days=2))
        [denied] = api.get("/v1/me/claims", headers=payer).json()
        assert (denied["state"], denied["jury"]["status"], denied["jury"]["approved"]) == (
            "rejected",
            "closed",
            False,
        )
        assert denied["may_ask_jury"] is False  # one jury per claim

        late = tokens("LATE")
        assert api.get("/v1/me/claims", headers=late).json()[0]["may_ask_jury"] is True
        clock_at(NOW_UTC + timedelta(days=31))  # past the plan's days to ask for a jury
        [too_late] = api.get("/v1/me/claims", headers=late).json()
        assert too_late["may_ask_jury"] is False and too_late["jury"] is None
        assert api.post("/v1/claims/late/jury", headers=late).status_code == 422


def test_a_member_without_claims_gets_an_empty_list_and_a_stranger_a_404(stack, tokens):
    enrol(FAMILY)
    claim_through_rules(submission("others-1", "OTHER", "C73"))
    with serving() as api:
        assert api.get("/v1/me/claims", headers=tokens("APPLICANT")).json() == []
        stranger = api.get("/v1/me/claims", headers=tokens("NOBODY"))
        assert stranger.status_code == 404
        assert stranger.json()["type"].endswith("/not-found")
