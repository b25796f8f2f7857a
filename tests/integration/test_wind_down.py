"""相互宝's wind-down replayed with the clock: announced 2021-12-28, ended 2022-01-28 24:00.
From the announcement nobody joins and the platform pays every cycle; after the end, a first
diagnosis before it may be claimed for 180 days, the 180th included; the audit holds the plan
to each of these, and fails when one is broken."""

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import func, select

from api.pages.render import announcement_html
from api.public import announcement_view
from broker.database import engine
from broker.proofkeys import proof_keys
from broker.submit import send_step
from domain.calendar import SHANGHAI, start_of_day
from domain.db import transaction
from domain.members import Enrolment
from domain.models import Charge, Claim, Member, Payout, PlanEvent, SharingCycle
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import members as member_service
from domain.services import payments, winddown
from domain.services.announcements import announcement
from tests.integration.api_support import serving, tokens  # noqa: F401
from tests.integration.scenario import CLOSE_AT, CRITICAL, review_by_records
from tests.integration.support import run_worker, wait_until
from tests.integration.test_api_disputes import clock_at
from tests.integration.test_debits import send_round
from tests.integration.test_redelivery import prepare_announced_cycle

T1 = datetime(2021, 12, 28, 0, 0, tzinfo=SHANGHAI)
T2 = datetime(2022, 1, 29, 0, 0, tzinfo=SHANGHAI)  # 2022-01-28 24:00
JOINED = datetime(2021, 6, 1, 10, 0, tzinfo=SHANGHAI)


def at(day: str, hour: int = 10) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(hour), SHANGHAI)


def enrolment(ref: str, payer: str | None = None, joined: datetime = JOINED) -> Enrolment:
    return Enrolment(
        member_ref=ref,
        plan=CRITICAL,
        birth_date=date(1986, 3, 1),
        sex="F",
        province="浙江",
        joined_at=joined,
        payer_ref=payer,
        name="吴小漫",
    )


def enrol(rows) -> member_service.ImportReport:
    report = member_service.ImportReport()
    member_service.import_members(engine(), enumerate(rows, start=2), report)
    return report


def claim(sid: str, ref: str, diagnosed: str, received: datetime) -> int:
    line = json.dumps(
        {
            "submission_id": sid,
            "member_ref": ref,
            "plan": CRITICAL,
            "icd10": "C73",
            "diagnosed_on": diagnosed,
            "hospital": "杭州市第一人民医院",
            "accident": False,
        }
    )
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(session, line, received)
    for step in (claim_service.accept, review_by_records):
        with transaction(engine()) as session:
            step(session, claim_id, received)
    with transaction(engine()) as session:
        if session.get(Claim, claim_id).state == "approved":
            claim_service.schedule(session, claim_id, received)
    return claim_id


def state(claim_id: int) -> tuple[str, str | None]:
    with transaction(engine()) as session:
        found = session.get(Claim, claim_id)
        return found.state, found.reason_code


def cycle_of(announce_on: str) -> SharingCycle:
    """Publish on the announcement day, close on the charge day a week later, pay its cases."""
    with transaction(engine()) as session:
        cycle_service.publish(session, CRITICAL, start_of_day(date.fromisoformat(announce_on)))
    with transaction(engine()) as session:
        cycle = cycle_service.due_cycle(session, CRITICAL, at("2030-01-01"))
        closing = cycle_service.begin_close(
            session, CRITICAL, start_of_day(cycle.charge_on), chunk_size=1000
        )
    for chunk in range(closing.chunks):
        with transaction(engine()) as session:
            cycle_service.charge_chunk(session, closing.id, chunk, at(str(cycle.charge_on)), keys())
    with transaction(engine()) as session:
        closed = cycle_service.finalise(session, closing.id, at(str(cycle.charge_on)), keys())
    pay(closed.id)
    return closed


def pay(cycle_id: int | None = None) -> None:
    """What pay_out_cycle, pay_pending and pay_out do, in process, the provider saying yes."""
    with transaction(engine()) as session:
        if cycle_id is not None:
            payments.create_cycle_payouts(session, cycle_id, at("2022-08-01"))
        pending = payments.pending_payouts(session)
    for payout_id in pending:
        with transaction(engine()) as session:
            payout = payments.claim_payout(session, payout_id, at("2022-08-01"))
        with transaction(engine()) as session:
            payments.record_payout(session, payout.id, True, "ref", None, at("2022-08-01"))


def keys():
    return proof_keys()


def problems() -> list[str]:
    with transaction(engine()) as session:
        return audit_service.audit(session, keys=keys()).problems


def advance(moment: datetime) -> str:
    with transaction(engine()) as session:
        return winddown.advance(session, CRITICAL, moment)


def report() -> dict:
    with transaction(engine()) as session:
        return winddown.report(session, CRITICAL)


def collect(cycle_id: int, on: str) -> None:
    debits = send_round(cycle_id, at(on, 3))
    with transaction(engine()) as session:
        payments.record_debits(session, debits, {d.key for d in debits}, at(on, 4))


def replay(refund_all_shares: bool = False) -> dict:
    """The timeline up to the settled plan; returns the ids a test looks at."""
    assert enrol([enrolment(f"C{n:04d}") for n in range(20)]).refused == []
    assert enrol([enrolment("D0001", payer="C0001")]).refused == []
    ids = {"first": claim("first", "C0005", "2021-11-25", at("2021-11-30"))}
    members_paid = cycle_of("2021-12-07")  # charged 2021-12-14: the members share
    collect(members_paid.id, "2021-12-14")
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, T2, refund_all_shares, "ops", at("2021-12-27"))
    ids["second"] = claim("second", "C0006", "2021-12-10", at("2021-12-15"))
    with transaction(engine()) as session:  # a member who leaves, then is diagnosed
        member_service.exit_member(session, CRITICAL, "C0015", at("2021-12-22"))
    ids["december"] = cycle_of("2021-12-21").id  # charged 2021-12-28, T1's day: the platform's
    assert advance(at("2021-12-28")) == "winding_down"
    ids["late_join"] = enrol([enrolment("C0100", joined=at("2021-12-29"))]).refused
    ids["third"] = claim("third", "C0007", "2021-12-30", at("2022-01-03"))
    ids["january"] = [cycle_of("2022-01-07").id, cycle_of("2022-01-21").id]
    assert advance(at("2022-01-29", 1)) == "tail"  # ended, and its last cycles are closed
    ids["day_1"] = claim("day-1", "C0011", "2022-01-28", at("2022-01-29"))
    ids["after_end"] = claim("after-end", "C0014", "2022-02-01", at("2022-02-02"))
    ids["left_before"] = claim("left-before", "C0015", "2022-01-10", at("2022-02-10"))
    ids["tail_cycle"] = cycle_of("2022-02-07").id
    ids["day_180"] = claim("day-180", "C0012", "2022-01-20", at("2022-07-19"))
    ids["day_181"] = claim("day-181", "C0013", "2022-01-20", at("2022-07-20"))
    ids["last_cycle"] = cycle_of("2022-07-21").id
    pay()
    ids["members_paid"] = members_paid.id
    return ids


def test_the_platform_pays_from_the_announcement_and_the_tail_takes_day_180_not_181(stack):
    ids = replay()
    assert advance(at("2022-07-27", 23)) == "tail"  # the tail's last day: 2022-01-28 + 180
    assert advance(at("2022-07-28", 1)) == "settled"
    assert problems() == []
    assert ids["late_join"] and "winding down" in ids["late_join"][0][1]
    for name in ("first", "second", "third", "day_1", "day_180"):
        assert state(ids[name]) == ("paid", None), name
    assert state(ids["day_181"]) == ("rejected", "after_plan_end")
    assert state(ids["after_end"]) == ("rejected", "after_plan_end")
    assert state(ids["left_before"]) == ("rejected", "not_member_at_diagnosis")
    with transaction(engine()) as session:
        cycles = {c.id: c for c in session.exec(select(SharingCycle))}
        charged_after = session.exec(
            select(Charge).where(Charge.cycle_id != ids["members_paid"])
        ).all()
        ended = session.exec(select(Member).where(Member.exit_reason == "plan_ended")).all()
    assert cycles[ids["members_paid"]].charged_fen > 0
    for cycle_id in [ids["december"], *ids["january"], ids["tail_cycle"], ids["last_cycle"]]:
        assert cycles[cycle_id].charged_fen == 0 and cycles[cycle_id].share_fen == 0
    # The platform paid each of its cycles' aid and fee in full (no surplus came in).
    december = cycles[ids["december"]]
    assert december.platform_share_fen + december.cap_subsidy_fen == (
        december.aid_fen + december.fee_fen - december.surplus_in_fen
    )
    assert charged_after == []
    assert {m.member_ref for m in ended} == {f"C{n:04d}" for n in range(20)} - {
        "C0005",  # paid out in December
        "C0006",
        "C0007",
        "C0015",  # left
    } | {"D0001"}
    final = report()
    assert final["stage"] == "settled" and final["last_tail_day"] == "2022-07-27"
    assert final["cases_paid_by_members"] == 1 and final["cases_paid_by_platform"] == 4
    assert final["last_sharing_cycle"]["charge_on"] == "2021-12-14"
    assert final["charged_to_members_fen"] == cycles[ids["members_paid"]].charged_fen
    assert [e["kind"] for e in final["events"]] == [
        "scheduled",
        "winding_down",
        "ended",
        "tail",
        "settled",
    ]


def test_a_late_or_redelivered_charge_after_the_announcement_charges_nobody(stack):
    ids = replay()
    december = ids["december"]
    with transaction(engine()) as session:
        assert not cycle_service.charge_chunk(session, december, 0, at("2022-01-02"), keys())
        assert payments.open_round(session, december, at("2022-01-02"), 1000)[1] == 0
    with transaction(engine()) as session:
        assert session.exec(select(Charge).where(Charge.cycle_id == december)).all() == []
    assert problems() == []


def test_refunding_every_share_pays_each_back_once_to_the_account_that_paid(stack):
    ids = replay(refund_all_shares=True)
    with transaction(engine()) as session:
        collected = session.exec(select(Charge).where(Charge.cycle_id == ids["members_paid"])).all()
        refunds = session.exec(select(Payout).where(Payout.purpose == "refund")).all()
    assert len(refunds) == len(collected) > 0
    assert {r.key for r in refunds} == {f"refund:{c.cycle_id}:{c.member_id}" for c in collected}
    assert all(r.status == "paid" for r in refunds)
    # The dependant's share goes back to the payer who paid it.
    with transaction(engine()) as session:
        dependant = session.exec(select(Member).where(Member.member_ref == "D0001")).one()
    assert [r.account for r in refunds if r.member_id == dependant.id] == ["C0001"]
    advance(at("2022-07-28", 1))
    with transaction(engine()) as session:  # advancing again makes no second refund
        assert len(session.exec(select(Payout).where(Payout.purpose == "refund")).all()) == len(
            refunds
        )
    assert problems() == []
    assert report()["refunds_paid_fen"] == sum(c.collected_fen for c in collected)


@pytest.mark.parametrize(
    "broken, said",
    [
        ("charge", "were charged"),
        ("tail", "is outside the tail"),
        ("join", "joined after the wind-down"),
        ("refund", "have no refund"),
    ],
)
def test_the_audit_fails_when_a_wind_down_promise_is_broken(stack, broken, said):
    ids = replay(refund_all_shares=True)
    advance(at("2022-07-28", 1))
    assert problems() == []
    with transaction(engine()) as session:
        if broken == "charge":  # a member charged for a cycle the platform pays
            member = session.exec(select(Member).where(Member.member_ref == "C0003")).one()
            session.add(
                Charge(
                    cycle_id=ids["december"],
                    member_id=member.id,
                    account_id=member.id,
                    amount_fen=10,
                )
            )
        elif broken == "tail":  # day 181 let through
            session.execute(
                text("UPDATE claim SET state = 'paid', reason_code = NULL WHERE id = :c"),
                {"c": ids["day_181"]},
            )
        elif broken == "join":
            session.execute(
                text("UPDATE member SET joined_at = :t WHERE member_ref = 'C0019'"),
                {"t": at("2021-12-29")},
            )
        else:
            session.execute(
                text(
                    "DELETE FROM payout WHERE purpose = 'refund' AND id IN "
                    "(SELECT min(id) FROM payout WHERE purpose = 'refund')"
                )
            )
    assert any(said in p for p in problems()), problems()


def test_a_wind_down_is_refused_when_it_would_reach_back_over_members_already_charged(stack):
    assert enrol([enrolment(f"C{n:04d}") for n in range(5)]).refused == []
    claim("first", "C0001", "2021-11-25", at("2021-11-30"))
    cycle_of("2021-12-07")
    with transaction(engine()) as session, pytest.raises(winddown.Refused, match="already"):
        winddown.schedule(
            session, CRITICAL, at("2021-12-14", 0), T2, False, "ops", at("2021-12-14")
        )
    with transaction(engine()) as session, pytest.raises(winddown.Refused, match="after"):
        winddown.schedule(session, CRITICAL, T2, T1, False, "ops", at("2021-12-20"))
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, T2, False, "ops", at("2021-12-20"))
    with transaction(engine()) as session:  # the same again: nothing changes
        winddown.schedule(session, CRITICAL, T1, T2, False, "ops", at("2021-12-21"))
    with transaction(engine()) as session, pytest.raises(winddown.Refused, match="not changed"):
        winddown.schedule(session, CRITICAL, T1, T2, True, "ops", at("2021-12-21"))


def test_the_announcement_tells_members_from_the_announcement_on(stack):
    ids = replay()
    with transaction(engine()) as session:
        before = announcement(session, session.get(SharingCycle, ids["members_paid"]))
        december = announcement(session, session.get(SharingCycle, ids["december"]))
    assert (
        announcement_view(before).wind_down is None and not announcement_view(before).platform_pays
    )
    view = announcement_view(december)
    assert view.platform_pays and str(view.wind_down.last_tail_day) == "2022-07-27"
    page = announcement_html(view)
    assert "终止公告" in page and "本期成员无需分摊" in page and "2022-07-27" in page


def test_the_members_pages_tell_of_the_wind_down_from_its_announcement(
    stack,
    tokens,  # noqa: F811
):
    """我的互助 and 分摊明细 show the notice from T1, to the payer for a dependant too; before T1
    they do not; the report page shows the stage, the cases and the last cycle members shared."""
    ids = replay()
    with serving() as api:
        clock_at(T1 - timedelta(hours=1))
        # The fleet's cookie is Secure: set here by hand, as a browser sends it over TLS.
        api.cookies.set("huzhu_token", tokens("C0001")["Authorization"][7:], path="/app")
        card = api.get("/app/me")
        assert card.status_code == 200 and "终止公告" not in card.text
        assert api.get("/v1/me", headers=tokens("C0001")).json()["wind_downs"] == []
        clock_at(T1 + timedelta(minutes=1))
        for path in ("/app/me", "/app/me/charges"):
            shown = api.get(path)
            assert shown.status_code == 200 and "终止公告" in shown.text, path
            assert (
                "最迟 2022-07-27" in shown.text
                and "2021-12-28 起的各期分摊由平台承担" in shown.text
            )
        report = api.get(f"/app/plans/{CRITICAL}/wind-down")
        assert report.status_code == 200
        assert f"第{ids['members_paid']}期" in report.text and "随计划终止" in report.text
        assert api.get("/app/plans/no-such-plan/wind-down").status_code == 404


def test_operators_schedule_a_wind_down_through_the_api_and_anyone_reads_its_report(
    stack,
    tokens,  # noqa: F811
):
    assert enrol([enrolment(f"C{n:04d}") for n in range(3)]).refused == []
    soon = datetime.now(SHANGHAI).replace(microsecond=0) + timedelta(days=2)
    body = {"announce_at": soon.isoformat(), "end_at": (soon + timedelta(days=31)).isoformat()}
    path = f"/v1/plans/{CRITICAL}/wind-down"
    with serving() as api:
        assert api.get(path).status_code == 404
        assert api.post(path, json=body, headers=tokens("C0001")).status_code == 403
        naive = body | {"end_at": (soon + timedelta(days=31)).replace(tzinfo=None).isoformat()}
        assert api.post(path, json=naive, headers=tokens("OPS", "operator")).status_code == 422
        made = api.post(path, json=body, headers=tokens("OPS", "operator"))
        assert made.status_code == 201 and made.json()["stage"] == "active"
        assert api.post(path, json=body, headers=tokens("OPS", "operator")).status_code == 201
        other = body | {"refund_all_shares": True}
        changed = api.post(path, json=other, headers=tokens("OPS", "operator"))
        assert changed.status_code == 409 and "not changed" in changed.json()["detail"]
        report = api.get(path).json()
        assert report["members"] == {"active": 3} and report["events"][0]["kind"] == "scheduled"
        assert api.get("/v1/plans/no-such-plan/wind-down").status_code == 404


def test_the_fleets_workers_charge_nobody_from_the_announcement_even_when_sent_again(
    postgres_stack,
):
    """On PostgreSQL with real workers: a close sent twice, then a chunk and a collection sent
    again after it, charge no member of a cycle charged on T1's day; the platform's share pays
    its cases; the beat's advance ends every membership at the end."""
    prepare_announced_cycle(critical=400)
    announce_at = CLOSE_AT  # the charge day's start: the platform pays this cycle
    end_at = announce_at + timedelta(days=31)
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, announce_at, end_at, False, "ops", datetime.now(UTC))
    log = postgres_stack.settings.data_dir / "worker.log"
    workers = run_worker(postgres_stack, concurrency=2)
    next(workers)
    try:
        send_step("close_cycle", CRITICAL, CLOSE_AT.isoformat())
        send_step("close_cycle", CRITICAL, CLOSE_AT.isoformat())
        cycle = wait_until(closed_cycle, 60, "the cycle closed", log)
        send_step("charge_chunk", cycle.id, 0)
        send_step("collect_debits", cycle.id, (CLOSE_AT + timedelta(days=1)).isoformat())
        send_step("advance_wind_downs", (end_at + timedelta(hours=1)).isoformat())
        wait_until(lambda: succeeded(log, "charge_chunk") == 1, 60, "the chunk sent again", log)
        wait_until(lambda: succeeded(log, "collect_debits") >= 2, 60, "collection again", log)
        wait_until(lambda: advance(end_at) == "tail", 60, "the plan ended", log)
        wait_until(lambda: all_paid(cycle.id), 60, "the cases paid", log)
    finally:
        workers.close()
    with transaction(engine()) as session:
        charged = session.exec(select(func.coalesce(func.sum(Charge.amount_fen), 0))).one()
        still_in = session.exec(
            select(func.count()).where(Member.plan == CRITICAL, Member.exited_at.is_(None))
        ).one()
        cycle = session.get(SharingCycle, cycle.id)
    assert charged == 0 and cycle.share_fen == 0 and cycle.charged_fen == 0
    # The platform pays the cycle in full: no member is charged, so no cap's subsidy either.
    assert cycle.platform_share_fen == cycle.aid_fen + cycle.fee_fen - cycle.surplus_in_fen > 0
    assert cycle.subsidy_fen == cycle.platform_share_fen and cycle.cap_subsidy_fen == 0
    assert still_in == 0
    assert problems() == []


def closed_cycle() -> SharingCycle | None:
    with transaction(engine()) as session:
        cycle = session.exec(select(SharingCycle).where(SharingCycle.plan == CRITICAL)).one()
        return cycle if cycle.status == "closed" else None


def succeeded(log, task: str) -> int:
    """How many runs of the task the worker's log reports done."""
    lines = log.read_text().splitlines()
    return sum(1 for line in lines if f"huzhu.{task}[" in line and " succeeded " in line)


def all_paid(cycle_id: int) -> bool:
    with transaction(engine()) as session:
        cases = session.exec(select(Claim).where(Claim.cycle_id == cycle_id)).all()
        return bool(cases) and all(c.state == "paid" for c in cases)


# What an attack on the wind-down found, each with its test.


def refund_plan() -> int:
    """Ten members and a dependant; a cycle the members share and pay; a wind-down refunding
    every share, advanced past its end; returns the members' cycle."""
    assert enrol([enrolment(f"C{n:04d}") for n in range(10)]).refused == []
    assert enrol([enrolment("D0001", payer="C0001")]).refused == []
    claim("first", "C0005", "2021-11-25", at("2021-11-30"))
    paid = cycle_of("2021-12-07")
    collect(paid.id, "2021-12-14")
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, T2, True, "ops", at("2021-12-27"))
    assert advance(at("2022-01-29", 1)) == "tail"
    return paid.id


def pay_refunds(refused: set[str] = frozenset()) -> None:
    with transaction(engine()) as session:
        pending = payments.pending_payouts(session)
    for payout_id in pending:
        with transaction(engine()) as session:
            key = payments.claim_payout(session, payout_id, at("2022-02-01")).key
        with transaction(engine()) as session:
            ok = key not in refused
            payments.record_payout(session, payout_id, ok, "ref", None, at("2022-02-01"))


def test_no_one_joins_once_the_announcement_has_passed_whatever_joined_at_a_file_gives(stack):
    assert enrol([enrolment(f"C{n:04d}") for n in range(3)]).refused == []
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, T2, False, "ops", at("2021-12-27"))
    # Imported now, long after T1, with a joined_at before it (no cycle fixed it since).
    refused = enrol([enrolment("LATE", joined=at("2021-12-27", 11))]).refused
    assert refused and "winding down" in refused[0][1]
    with transaction(engine()) as session:
        assert session.exec(select(Member).where(Member.member_ref == "LATE")).first() is None


def test_scheduling_refuses_an_end_passed_and_an_announcement_before_the_last_to_join(
    sqlite_stack,
):
    assert enrol([enrolment("C0001", joined=at("2021-12-27", 18))]).refused == []
    with transaction(engine()) as session, pytest.raises(winddown.Refused, match="joined at"):
        winddown.schedule(
            session, CRITICAL, at("2021-12-27", 8), T2, False, "ops", at("2021-12-27", 20)
        )
    with transaction(engine()) as session, pytest.raises(winddown.Refused, match="has passed"):
        winddown.schedule(
            session,
            CRITICAL,
            at("2021-12-27", 19),
            at("2021-12-27", 21),
            False,
            "ops",
            at("2021-12-28"),
        )
    # Asked again after the day it could first be asked: the one stored, not a refusal.
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, T2, False, "ops", at("2021-12-27", 20))
    with transaction(engine()) as session:
        assert (
            winddown.schedule(session, CRITICAL, T1, T2, False, "ops", at("2022-01-05")).end_at
            == T2
        )


def test_a_diagnosis_on_the_ends_own_day_is_not_covered_whenever_it_is_reviewed(sqlite_stack):
    """水滴互助 closed at 18:00: the last day covered is the day before, as a membership that
    ends that day covers it, before the advance has stamped the exits and after."""
    noon = datetime(2022, 1, 28, 12, 0, tzinfo=SHANGHAI)
    assert enrol([enrolment(f"C{n:04d}") for n in range(5)]).refused == []
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, noon, False, "ops", at("2021-12-27"))
    before = claim("before-advance", "C0001", "2022-01-28", at("2022-01-28", 9))
    covered = claim("day-before", "C0002", "2022-01-27", at("2022-01-28", 9))
    advance(at("2022-01-28", 13))
    after = claim("after-advance", "C0003", "2022-01-28", at("2022-01-28", 9))
    assert state(before) == state(after) == ("rejected", "not_member_at_diagnosis")
    assert state(covered)[0] == "scheduled"


def test_a_refund_the_provider_refuses_keeps_the_plan_from_settling(sqlite_stack):
    refund_plan()
    with transaction(engine()) as session:
        refused = session.exec(select(Payout.key).where(Payout.purpose == "refund")).first()
    pay_refunds(refused={refused})
    assert advance(at("2022-07-28", 1)) == "tail"  # the tail is over, a refund is not made
    assert report()["refunds_failed_fen"] > 0
    with transaction(engine()) as session:  # settled anyway (as a bug would): the audit says
        session.execute(text("UPDATE planwinddown SET stage = 'settled'"))
        session.add(PlanEvent(plan=CRITICAL, at=at("2022-07-28", 1), kind="settled", detail=""))
    assert any("still owes: 1 payouts failed" in p for p in problems())


@pytest.mark.parametrize("broken", ["amount", "account", "member", "another key"])
def test_the_audit_fails_on_a_refund_of_the_wrong_amount_account_member_or_twice(
    sqlite_stack, broken
):
    refund_plan()
    with transaction(engine()) as session:
        dependant = session.exec(select(Member).where(Member.member_ref == "D0001")).one()
        refund = session.exec(select(Payout).where(Payout.member_id == dependant.id)).one()
        other = session.exec(select(Member).where(Member.member_ref == "C0008")).one()
        if broken == "another key":
            fields = refund.model_dump(exclude={"id", "key"})
            session.add(Payout(**fields, key=refund.key + ":again"))
        else:
            change = {
                "amount": ("amount_fen", refund.amount_fen * 3),
                "account": ("account", "C0009"),
            }
            field, value = change.get(broken, ("member_id", other.id))
            setattr(refund, field, value)
            session.add(refund)
    pay_refunds()
    assert any("refund" in p for p in problems()), broken


def test_arrears_paid_after_the_plan_settled_are_refunded_at_once(sqlite_stack):
    assert enrol([enrolment(f"C{n:04d}") for n in range(5)]).refused == []
    claim("first", "C0004", "2021-11-25", at("2021-11-30"))
    members_paid = cycle_of("2021-12-07")
    debits = send_round(members_paid.id, at("2021-12-14", 3))
    unpaid = next(d for d in debits if d.account == "C0001")
    with transaction(engine()) as session:
        payments.record_debits(
            session, debits, {d.key for d in debits} - {unpaid.key}, at("2021-12-14", 4)
        )
    with transaction(engine()) as session:
        payments.close_window(session, members_paid.id, at("2021-12-27"))
        winddown.schedule(session, CRITICAL, T1, T2, True, "ops", at("2021-12-27"))
    assert advance(at("2022-01-29", 1)) == "tail"
    pay()
    assert advance(at("2022-07-28", 1)) == "settled" and problems() == []
    with transaction(engine()) as session:  # C0001 settles the arrears (huzhu members settle)
        late = payments.claim_arrears(session, CRITICAL, "C0001")
    with transaction(engine()) as session:
        payments.record_debits(session, late, {d.key for d in late}, at("2022-08-01"))
    assert problems() == []  # its refund is made with it, in flight
    with transaction(engine()) as session:
        owed = session.exec(select(Payout).where(Payout.account == "C0001")).one()
    assert (owed.status, owed.amount_fen) == ("pending", unpaid.amount_fen)
    pay()
    assert problems() == []


def test_no_membership_outlasts_the_plan(sqlite_stack):
    """An exit asked after the end, before the advance, ends at the end; the audit fails on a
    membership left open in an ended plan."""
    assert enrol([enrolment(f"C{n:04d}") for n in range(3)]).refused == []
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, T2, False, "ops", at("2021-12-27"))
        member_service.exit_member(session, CRITICAL, "C0001", at("2022-01-29", 10))
    advance(at("2022-01-29", 11))
    with transaction(engine()) as session:
        left = session.exec(select(Member).where(Member.member_ref == "C0001")).one()
    assert (left.exited_at, left.exit_reason) == (T2, "plan_ended")
    assert problems() == []
    with transaction(engine()) as session:
        session.execute(text("UPDATE member SET exited_at = NULL WHERE member_ref = 'C0002'"))
    assert any("1 memberships outlast the plan's end" in p for p in problems())


def test_a_claim_in_review_after_the_end_is_not_yet_a_broken_promise(sqlite_stack):
    assert enrol([enrolment(f"C{n:04d}") for n in range(3)]).refused == []
    with transaction(engine()) as session:
        winddown.schedule(session, CRITICAL, T1, T2, False, "ops", at("2021-12-27"))
    advance(at("2022-01-29", 1))
    line = json.dumps(
        {
            "submission_id": "late",
            "member_ref": "C0001",
            "plan": CRITICAL,
            "icd10": "C73",
            "diagnosed_on": "2022-02-01",
            "hospital": "杭州市第一人民医院",
            "accident": False,
        }
    )
    with transaction(engine()) as session:
        claim_id, _ = claim_service.record_submission(session, line, at("2022-02-02"))
    with transaction(engine()) as session:
        claim_service.accept(session, claim_id, at("2022-02-02"))
    assert state(claim_id)[0] == "under_review" and problems() == []
