"""The member's pages over HTTP on each stack: the login (a development token only on the
embedded default, the platform's token anywhere), the cookie kept from scripts, forms from
other sites refused, bad input answered in the member's words with nothing recorded."""

from sqlmodel import select

from api.auth import mint
from broker.app import reconfigure
from broker.database import engine
from broker.settings import get_settings
from domain.db import transaction
from domain.models import Claim, Objection
from tests.integration.api_support import bearer, serving
from tests.integration.scenario import CRITICAL, enrol, membership, submission
from tests.integration.test_api_disputes import clock_at
from tests.integration.test_disputes import OBJECTING, claim_through_rules, publish


def logged_in(api, member_ref: str) -> None:
    answer = api.post("/app/login", data={"member_ref": member_ref, "next": "/app/me"})
    assert answer.status_code == 303 and answer.headers["location"] == "/app/me", answer.text


def objections() -> list[Objection]:
    with transaction(engine()) as session:
        return list(session.exec(select(Objection)))


def test_a_page_sends_a_visitor_to_log_in_and_back(sqlite_stack):
    with serving() as api:
        away = api.get("/app/me/charges")
        assert away.status_code == 303
        assert away.headers["location"] == "/app/login?next=/app/me/charges"
        answer = api.post("/app/login", data={"member_ref": "C0001", "next": "/app/me/charges"})
        assert answer.status_code == 303 and answer.headers["location"] == "/app/me/charges"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/app" in cookie
        card = api.get("/app/me")
        assert card.status_code == 404 and "还没有加入" in card.text  # logged in, not a member
        assert card.headers["cache-control"] == "private, no-store"


def test_the_login_goes_back_only_to_our_own_pages_and_refuses_a_blank_id(sqlite_stack):
    with serving() as api:
        for elsewhere in ("https://evil.example/", "//evil.example/app", "/v1/me"):
            answer = api.post("/app/login", data={"member_ref": "C0001", "next": elsewhere})
            assert answer.headers["location"] == "/app/me", elsewhere
        blank = api.post("/app/login", data={"member_ref": "  ", "next": "/app/me"})
        assert blank.status_code == 401 and "请填写成员编号" in blank.text
        assert "set-cookie" not in blank.headers


def test_the_fleet_takes_only_the_platforms_token(postgres_stack, tokens):
    platform = tokens("C0001")["Authorization"].removeprefix("Bearer ")
    with serving() as api:
        form = api.get("/app/login")
        assert 'name="token"' in form.text and 'name="member_ref"' not in form.text
        minted = api.post("/app/login", data={"member_ref": "C0001"})
        assert minted.status_code == 401 and "set-cookie" not in minted.headers
        forged = api.post("/app/login", data={"token": platform[:-4] + "AAAA"})
        assert forged.status_code == 401 and "set-cookie" not in forged.headers
        answer = api.post("/app/login", data={"token": platform, "next": "/app/jury"})
        assert answer.status_code == 303 and answer.headers["location"] == "/app/jury"
        assert "secure" in answer.headers["set-cookie"].lower()  # the fleet is behind TLS


def test_an_objection_form_from_another_site_is_refused_and_records_nothing(stack, tokens):
    enrol(membership(20, 0))
    claim_through_rules(submission("case-a", "C0005", "C73"))
    publish()
    clock_at(OBJECTING)
    reason = {"reason": "I saw the applicant at work last week"}
    with serving() as api:
        if stack.name == "sqlite":
            logged_in(api, "C0001")
        else:  # the fleet's cookie is Secure: sent here by hand, as a browser would over TLS
            api.cookies.set("huzhu_token", tokens("C0001")["Authorization"][7:], path="/app")
        url = "/app/cases/case-a/objection"
        for foreign in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = api.post(url, data=reason, headers=foreign)
            assert refused.status_code == 403 and "其他网站" in refused.text
        short = api.post(url, data={"reason": "no"})
        assert short.status_code == 422 and "填写有误" in short.text
        script = api.post(url, data=reason | {"evidence": "javascript:alert(document.cookie)"})
        assert script.status_code == 422 and "http(s) link" in script.text
        assert objections() == []

        # Behind a proxy the pages know their origin from the settings, not from the Host.
        reconfigure(get_settings().model_copy(update={"app_origin": "https://huzhu.example"}))
        direct = api.post(url, data=reason, headers={"Origin": str(api.base_url).rstrip("/")})
        assert direct.status_code == 403
        evidence = reason | {"evidence": "https://photos.example/at-work.jpg"}
        here = api.post(url, data=evidence, headers={"Origin": "https://huzhu.example"})
        assert here.status_code == 201 and "异议已记录" in here.text
        again = api.post(url, data=reason)
        assert again.status_code == 409 and "已对这个案例提出过异议" in again.text
        assert [o.reason for o in objections()] == [reason["reason"]]
        listed = api.get("/app/me/objections")
        assert "案例 case-a" in listed.text and "待复核" in listed.text
        assert 'href="https://photos.example/at-work.jpg"' in listed.text
        reviewer = tokens("DR-LI", "reviewer")
        [waiting] = api.get("/v1/review/objections", headers=reviewer).json()
        assert waiting["evidence"] == "https://photos.example/at-work.jpg"  # the reviewer sees it

        page = api.get(f"/app/plans/{CRITICAL}/announcement")
        assert page.status_code == 200 and "吴*漫" in page.text and "吴小漫" not in page.text
        assert api.get("/app/plans/no-such-plan/announcement").status_code == 404


def test_a_claim_form_sent_twice_is_one_application(stack, tokens):
    enrol(membership(20, 0))
    form = {
        "submission_id": "form-1",
        "membership": f"{CRITICAL}|C0005",
        "icd10": "C73",
        "diagnosed_on": "2026-11-20",
        "hospital": "杭州市第一人民医院",
        "accident": "no",
    }
    with serving() as api:
        if stack.name == "sqlite":
            logged_in(api, "C0005")
        else:
            api.cookies.set("huzhu_token", tokens("C0005")["Authorization"][7:], path="/app")
        for _ in range(2):
            sent = api.post("/app/me/claims", data=form)
            assert sent.status_code == 303 and sent.headers["location"] == "/app/claims/form-1"
        other = api.post("/app/me/claims", data=form | {"membership": f"{CRITICAL}|C0001"})
        assert other.status_code == 422  # another member's claim: not the caller's to make
        shown = api.get("/app/claims/form-1")
        assert shown.status_code == 200 and "已收到" in shown.text
    with transaction(engine()) as session:
        assert [c.submission_id for c in session.exec(select(Claim))] == ["form-1"]


def joining(**changes) -> dict:
    form = {
        "plan": CRITICAL,
        "birth_date": "1990-05-01",
        "sex": "F",
        "province": "浙江",
        "consent_version": "2026-12-01",
        "consent": "agreed",
    } | {f"health-{q}": "no" for q in ("cancer", "heart", "stroke", "organs", "treatment")}
    return form | changes


def test_family_is_enrolled_from_the_page_and_the_consent_is_never_assumed(sqlite_stack):
    with serving() as api:
        logged_in(api, "PARENT")
        unticked = joining()
        del unticked["consent"]
        refused = api.post("/app/join", data=unticked)
        assert refused.status_code == 422 and "需要您同意自动扣款授权" in refused.text
        assert 'name="consent" value="agreed">' in refused.text  # still not ticked
        maybe = api.post("/app/join", data=joining(**{"health-heart": "maybe"}))
        assert maybe.status_code == 422 and "请回答每一道健康告知问题" in maybe.text
        assert api.get("/app/me").status_code == 404  # nothing joined yet

        assert api.post("/app/join", data=joining()).status_code == 201
        child = joining(member_ref="KID-1", birth_date="2015-02-03")
        enrolled = api.post("/app/me/dependants", data=child)
        assert enrolled.status_code == 201 and "KID-1 已加入" in enrolled.text
        card = api.get("/v1/me", headers=bearer(mint(get_settings(), "PARENT", set()))).json()
        assert [d["member_ref"] for d in card["dependants"]] == ["KID-1"]

        logged_in(api, "KID-1")  # a dependant does not enrol family of their own
        grandchild = api.post("/app/me/dependants", data=joining(member_ref="KID-2"))
        assert grandchild.status_code == 422 and "KID-2" not in api.get("/app/me").text


def test_bad_input_on_a_page_is_answered_by_a_page_never_a_500(stack, tokens):
    enrol(membership(5, 0))
    with serving() as api:
        if stack.name == "sqlite":
            logged_in(api, "C0001")
        else:
            api.cookies.set("huzhu_token", tokens("C0001")["Authorization"][7:], path="/app")
        for method, path, status in (
            ("GET", "/app/claims/a%00b", 422),  # PostgreSQL cannot even compare a NUL
            ("POST", "/app/cases/a%00b/objection", 422),
            ("POST", "/app/juries/99999999999999999999/vote", 422),
            ("POST", "/app/juries/abc/vote", 422),
            ("GET", "/app/no-such-page", 404),
            ("GET", "/app/logout", 405),
        ):
            answer = api.request(method, path, data={"support": "yes", "reason": "a reason"})
            assert answer.status_code == status, (path, answer.text[:300])
            assert answer.headers["content-type"].startswith("text/html"), path
            assert answer.headers["x-frame-options"] == "DENY"
        assert api.get("/v1/no-such-thing").headers["content-type"] == "application/problem+json"

        for chunked in (False, True):  # a declared length, and a body sent in chunks
            body = b"reason=" + b"x" * 70_000
            content = iter([body]) if chunked else body
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            large = api.post("/app/cases/case-a/objection", content=content, headers=headers)
            assert large.status_code == 413 and "提交的内容太大" in large.text, chunked
        unchosen = api.post("/app/juries/1/vote", data={"support": "true"})
        assert unchosen.status_code == 422 and "请选择支持或不支持赔付" in unchosen.text
        odd = api.post("/app/jury/exam", data={"waiting": "²", "cap": "9" * 5000})
        assert odd.status_code == 200 and "答对 0 / 5 题" in odd.text
        framed = api.post("/app/logout", headers={"Origin": "null"})
        assert framed.status_code == 403

        reconfigure(get_settings().model_copy(update={"api_write_limit": "1/minute"}))
        api.post("/app/jury/exam", data={})
        limited = api.post("/app/jury/exam", data={})
        assert limited.status_code == 429 and "操作太频繁" in limited.text


def test_a_form_sent_logged_out_goes_to_the_login_and_back_to_its_page(sqlite_stack):
    announcement = f"http://127.0.0.1/app/plans/{CRITICAL}/announcement"
    with serving() as api:
        sent = api.post("/app/cases/case-a/objection", headers={"Referer": announcement})
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/app/login?next=/app/plans/{CRITICAL}/announcement"
        elsewhere = api.post(
            "/app/cases/case-a/objection", headers={"Referer": "https://x.example/"}
        )
        assert elsewhere.headers["location"] == "/app/login?next=/app/me"
