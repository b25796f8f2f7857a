"""Families and races over HTTP: who may enrol whom, what a leaving payer still owes, and
joins, exits and family enrolments sent at the same moment (both stacks)."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from api.bodylimit import MAX_BODY_BYTES
from broker.database import engine
from domain.db import transaction
from domain.models import Claim, Member
from domain.services import members as member_service
from tests.integration.api_support import at_once, serving
from tests.integration.scenario import (
    CRITICAL,
    NOW_UTC,
    SENIOR,
    enrol,
    member,
    membership,
    submission,
)
from tests.integration.test_api_disputes import clock_at
from tests.integration.test_api_members import applicant, token
from tests.integration.test_disputes import claim_through_rules, publish
from tests.integration.test_money_edges import A_ON, C_ON, collect_all_but, run_cycle

SENIOR_APPLICANT = {"plan": SENIOR, "birth_date": "1960-03-01"}
CHILD = {"birth_date": "2015-01-01"}


def rows_of(ref: str) -> list[tuple[str, int | None]]:
    with transaction(engine()) as session:
        found = session.exec(select(Member).where(Member.member_ref == ref)).all()
        return [(m.plan, m.payer_id) for m in found]


def kind(answer) -> str:
    return answer.json()["type"].rsplit("/", 1)[-1]


def test_only_a_member_paying_for_themselves_enrols_family(sqlite_stack):
    a, b = token("A"), token("B")
    with serving() as api:
        assert api.post("/v1/enrolments", json=applicant(), headers=a).status_code == 201
        kid = applicant(member_ref="B", birth_date="2010-01-01")
        assert api.post("/v1/me/dependants", json=kid, headers=a).status_code == 201
        grandkid = api.post("/v1/me/dependants", json=applicant(member_ref="C", **CHILD), headers=b)
        assert grandkid.status_code == 422 and kind(grandkid) == "payer-is-a-dependant"
        assert rows_of("C") == []
        # So the payer can always take the family out, and then leave.
        out = api.post("/v1/me/exit", json={"plan": CRITICAL, "member_ref": "B"}, headers=a)
        assert out.status_code == 200, out.text
        assert api.post("/v1/me/exit", json={"plan": CRITICAL}, headers=a).status_code == 200


def test_no_one_enrols_another_members_ref_as_their_dependant(sqlite_stack):
    victim, stranger = token("VICTIM"), token("STRANGER")
    with serving() as api:
        for who in (victim, stranger):
            assert api.post("/v1/enrolments", json=applicant(), headers=who).status_code == 201
        for plan in ({}, SENIOR_APPLICANT):
            taken = api.post(
                "/v1/me/dependants",
                json=applicant(member_ref="VICTIM", **plan),
                headers=stranger,
            )
            assert taken.status_code == 409 and kind(taken) == "member-ref-taken", taken.text
        assert rows_of("VICTIM") == [(CRITICAL, None)]
        # What the stranger's token may read has not grown either.
        assert api.get("/v1/me", headers=stranger).json()["dependants"] == []


def test_a_dependants_fields_are_checked_as_an_imports_are(sqlite_stack):
    me = token("SPACEY")
    with serving() as api:
        senior = applicant(**SENIOR_APPLICANT)
        assert api.post("/v1/enrolments", json=senior, headers=me).status_code == 201
        itself = api.post("/v1/me/dependants", json=applicant(member_ref=" SPACEY "), headers=me)
        assert itself.status_code == 422 and kind(itself) == "own-dependant"
        assert rows_of("SPACEY") == [(SENIOR, None)]
        for bad in (
            {"member_ref": "   "},
            {"member_ref": "a\u0000b"},
            {"member_ref": "tab\there"},
            {"member_ref": "P1", "province": "  "},
            {"member_ref": "P2", "province": "x\u0000"},
        ):
            answer = api.post("/v1/me/dependants", json=applicant(**bad), headers=me)
            assert answer.status_code == 422 and kind(answer) == "invalid-request", bad
        padded = api.post(
            "/v1/me/dependants", json=applicant(member_ref=" KID ", **CHILD), headers=me
        )
        assert padded.status_code == 201 and padded.json()["member_ref"] == "KID"


def test_a_leaving_payer_is_told_what_the_family_still_owes(sqlite_stack):
    enrol(
        [
            *membership(6, 0),
            member("PAYER", CRITICAL, 40),
            member("DEP", CRITICAL, 30, payer="PAYER"),
        ]
    )
    claim_through_rules(submission("first", "C0005", "C73"), NOW_UTC)
    cycle = run_cycle(CRITICAL, A_ON)
    assert len(collect_all_but(cycle, {"PAYER", "DEP"})) == 2
    payer = token("PAYER")
    clock_at(datetime.combine(C_ON, datetime.min.time(), UTC) + timedelta(days=3))
    with serving() as api:
        kid = api.post("/v1/me/exit", json={"plan": CRITICAL, "member_ref": "DEP"}, headers=payer)
        assert kid.status_code == 200 and kid.json()["still_owes_fen"] == cycle.share_fen
        out = api.post("/v1/me/exit", json={"plan": CRITICAL}, headers=payer)
        assert out.status_code == 200
        assert out.json()["still_owes_fen"] == 2 * cycle.share_fen  # theirs and the family's


def test_a_body_over_the_limit_is_refused_before_it_is_read(sqlite_stack):
    me = token("BIG")
    with serving() as api:
        assert api.post("/v1/enrolments", json=applicant(), headers=me).status_code == 201
        body = {"member_ref": "BIG", "plan": CRITICAL, "pad": "x" * MAX_BODY_BYTES}
        declared = api.post("/v1/claims", json=body, headers=me | {"Idempotency-Key": "big"})
        encoded = json.dumps(body).encode()
        chunks = (encoded[i : i + 4096] for i in range(0, len(encoded), 4096))
        streamed = api.post(  # no Content-Length: sent chunked, counted as it is read
            "/v1/claims",
            content=chunks,
            headers=me | {"Idempotency-Key": "big-2", "Content-Type": "application/json"},
        )
        for refused in (declared, streamed):
            assert refused.status_code == 413, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
        with transaction(engine()) as session:
            assert session.exec(select(Claim)).first() is None


def test_one_join_one_enrolment_one_exit_however_many_are_sent_at_once(stack, tokens):
    me = tokens("RACER")
    kid = applicant(member_ref="KID", **CHILD)
    leave = {"plan": CRITICAL, "member_ref": "KID"}
    with serving() as api:
        joins = at_once(8, lambda _: api.post("/v1/enrolments", json=applicant(), headers=me))
        kids = at_once(8, lambda _: api.post("/v1/me/dependants", json=kid, headers=me))
        exits = at_once(6, lambda _: api.post("/v1/me/exit", json=leave, headers=me))
    assert sorted(a.status_code for a in joins) == [201] + [409] * 7
    assert sorted(a.status_code for a in kids) == [201] + [409] * 7
    assert sorted(a.status_code for a in exits) == [200] + [409] * 5
    assert rows_of("RACER") == [(CRITICAL, None)]


def test_a_payer_leaving_while_a_dependant_joins_never_leaves_them_paid_by_no_one(stack, tokens):
    with serving() as api:
        for n in range(10):
            payer = tokens(f"P{n}")
            assert api.post("/v1/enrolments", json=applicant(), headers=payer).status_code == 201

            def work(i: int, payer=payer, n=n):
                if i == 0:
                    return api.post("/v1/me/exit", json={"plan": CRITICAL}, headers=payer)
                family = applicant(member_ref=f"K{n}", **CHILD)
                return api.post("/v1/me/dependants", json=family, headers=payer)

            out, kid = at_once(2, work)
            assert {out.status_code, kid.status_code} <= {200, 201, 409, 422}, (out.text, kid.text)
            assert not (out.status_code == 200 and kid.status_code == 201), (n, out.text, kid.text)


def test_two_payers_enrolling_one_person_in_two_plans_at_once_make_one_payer(stack, tokens):
    """The (plan, member_ref) key is per plan: the person's own lock keeps the second payer
    from finding them free while the first one's enrolment is not committed yet."""
    first, second = tokens("P1"), tokens("P2")
    with serving() as api:
        for who in (first, second):
            assert api.post("/v1/enrolments", json=applicant(), headers=who).status_code == 201
        for n in range(4):
            bodies = [
                applicant(member_ref=f"KID{n}", **CHILD),
                applicant(member_ref=f"KID{n}", **SENIOR_APPLICANT),
            ]
            pairs = list(zip(bodies, (first, second), strict=True))
            out = at_once(
                2,
                lambda i, pairs=pairs: api.post(
                    "/v1/me/dependants", json=pairs[i][0], headers=pairs[i][1]
                ),
            )
            assert sorted(a.status_code for a in out) == [201, 409], [a.text for a in out]
            assert len({payer for _, payer in rows_of(f"KID{n}")}) == 1


def test_a_payer_leaving_one_plan_never_pays_a_new_dependant_from_that_row(stack, tokens):
    with serving() as api:
        for n in range(5):
            me = tokens(f"Q{n}")
            for plan in ({}, SENIOR_APPLICANT):
                assert (
                    api.post("/v1/enrolments", json=applicant(**plan), headers=me).status_code
                    == 201
                )

            def work(i: int, me=me, n=n):
                if i == 0:
                    return api.post("/v1/me/exit", json={"plan": CRITICAL}, headers=me)
                family = applicant(member_ref=f"QK{n}", **CHILD)
                return api.post("/v1/me/dependants", json=family, headers=me)

            assert all(a.status_code < 500 for a in at_once(2, work))
    with transaction(engine()) as session:
        for kid in session.exec(select(Member).where(col(Member.member_ref).like("QK%"))):
            payer = session.get(Member, kid.payer_id)
            assert payer is not None and payer.exited_at is None, kid.member_ref


def test_a_dependant_joining_while_the_cycle_is_published_does_not_deadlock(
    postgres_stack, tokens, monkeypatch
):
    """Publishing holds the plan's lock alone, then ages members out; an enrolment that
    locked the payer's rows before the plan's lock would deadlock with it. The window is
    widened by a pause before the enrolment's insert (a payer who ages out at this cut-off)."""
    enrol([*membership(5, 0), member("AGED", CRITICAL, 60)])
    real = member_service.import_batch
    locked = threading.Event()

    def slow(session, batch, report, **kwargs):
        locked.set()
        time.sleep(1.0)
        return real(session, batch, report, **kwargs)

    monkeypatch.setattr(member_service, "import_batch", slow)
    errors: list[BaseException] = []

    def publishing() -> None:
        locked.wait(10)
        time.sleep(0.2)
        try:
            publish()
        except Exception as error:  # a deadlock is raised here, in the publishing thread
            errors.append(error)

    with serving() as api:
        thread = threading.Thread(target=publishing)
        thread.start()
        kid = applicant(member_ref="AGEDKID", **CHILD)
        answer = api.post("/v1/me/dependants", json=kid, headers=tokens("AGED"))
        thread.join(30)
    assert answer.status_code == 201 and not errors, (answer.text, errors)
