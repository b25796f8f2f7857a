"""A member's pages as they use them on a phone, in a real Chromium over the demo's data:
object from the 公示, follow a claim and ask for a jury, sit the juror exam and vote, read
分摊明细 against the API, join (the consent never ticked for them) and leave; no page shows
another member's name or birth date."""

import re
import sqlite3
from datetime import date, timedelta

import httpx
import pytest

from domain.announcements import mask_name
from domain.money import yuan
from tests.browser.conftest import Phone

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


def test_a_member_objects_from_the_announcement_and_sees_it_on_their_list(phone, site):
    member = phone("M0000150")
    page = member.open("/app/plans/critical-illness/announcement")
    assert site.announce_on.isoformat() in page.locator("header").inner_text()
    member.check("announcement")
    case = page.locator("#case-app-1")
    case.get_by_text("我有异议").click()
    case.get_by_label("异议理由").fill("上周还看到申请人正常上班")
    member.check("announcement-objecting")
    case.get_by_role("button", name="提交异议").click()
    status = page.get_by_role("status")
    assert "app-1" in status.inner_text() and "已记录" in status.inner_text()
    deadline = page.locator("dt", has_text="异议期至").locator("xpath=following-sibling::dd[1]")
    assert deadline.inner_text() == f"{site.announce_on + timedelta(days=7)} 00:00"
    member.check("objection-filed")

    mine = member.open("/app/me/objections")
    assert mine.locator(".objection h2").all_inner_texts() == ["案例 app-1"]
    assert "待复核" in mine.locator(".objection").inner_text()
    member.check("objections")

    again = member.open("/app/plans/critical-illness/announcement").locator("#case-app-1")
    again.get_by_text("我有异议").click()
    again.get_by_label("异议理由").fill("再提一次异议试试")
    again.get_by_role("button", name="提交异议").click()
    assert "您已对这个案例提出过异议" in member.page.get_by_role("alert").inner_text()


def test_a_rejected_applicant_asks_a_jury_and_a_juror_passes_the_exam_and_votes(phone, site):
    applicant = phone("M0000114")
    page = applicant.open("/app/me/claims")
    assert "未通过" in page.locator("#claim-app-2").inner_text()
    applicant.check("claims")
    page.locator("#claim-app-2").click()
    page.wait_for_url("**/app/claims/app-2")
    assert page.locator(".state").inner_text() == "未通过"
    assert "不符合本计划的疾病定义" in page.locator(".reason").inner_text()
    applicant.check("claim")
    page.get_by_role("button", name="申请赔审团").click()
    assert "第" in page.locator(".card").first.inner_text()
    jury_id = int(re.search(r"第(\d+)号评议", page.content()).group(1))

    juror = phone(uncertified_member(site))
    page = juror.open("/app/jury")
    juror.check("jury-exam")
    right = {"waiting": 1, "announce": 0, "cap": 1, "votes": 2, "fee": 0}
    for number, question in enumerate(page.locator("fieldset.question").all()):
        answer = list(right.values())[number]
        question.locator("input[type=radio]").nth(answer).check()
    page.get_by_role("button", name="交卷").click()
    assert "通过" in page.get_by_role("status").inner_text()
    page = juror.open("/app/jury")
    case = page.locator(f"#jury-{jury_id}")
    assert "翟*" in case.inner_text()  # masked, as on the 公示
    juror.check("jury")
    case.get_by_role("button", name="支持赔付", exact=True).click()
    assert "支持赔付" in page.locator(".card").first.inner_text()
    page = juror.open("/app/jury")
    page.locator(f"#jury-{jury_id}").get_by_role("button", name="不支持赔付").click()
    assert "第一票有效" in page.get_by_role("alert").inner_text()


def test_a_member_applies_for_aid_and_follows_the_claim(phone, site):
    member = phone("M0000130")
    page = member.open("/app/me/claims")
    page.get_by_role("link", name="申请互助金").click()
    page.wait_for_url("**/app/me/claims/new")
    member.check("claim-form")
    page.get_by_label("诊断编码").fill("not a code")
    page.get_by_label("确诊日期").fill(str(date.today() - timedelta(days=3)))
    page.get_by_label("确诊医院").fill("杭州市第一人民医院")
    page.get_by_label("否").check()
    page.get_by_role("button", name="提交申请").click()
    assert "icd10" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("确诊医院").input_value() == "杭州市第一人民医院"
    page.get_by_label("诊断编码").fill("C73")
    page.get_by_role("button", name="提交申请").click()
    page.wait_for_url("**/app/claims/*")
    submission_id = page.url.rsplit("/", 1)[1]
    assert page.locator(".history li").count() >= 1
    followed = httpx.get(f"{site.url}/v1/claims/{submission_id}", headers=site.token("M0000130"))
    assert followed.status_code == 200 and followed.json()["plan"] == "critical-illness"
    listed = member.open("/app/me/claims").locator(f"#claim-{submission_id}")
    assert listed.count() == 1


def uncertified_member(site) -> str:
    """A member of the demo who may sit the exam and then vote: an adult paying for
    themselves, a member for more than 30 days, not yet a juror."""
    with sqlite3.connect(site.data / "huzhu.db") as db:
        [(ref,)] = db.execute(
            "SELECT member_ref FROM member WHERE NOT jury_certified AND payer_id IS NULL"
            " AND exited_at IS NULL AND plan = 'critical-illness' AND birth_date < ?"
            " AND joined_at < ? AND member_ref != 'M0000114' ORDER BY id LIMIT 1",
            [str(date.today() - timedelta(days=30 * 365)), str(date.today() - timedelta(days=60))],
        ).fetchall()
    return ref


def test_the_charges_page_shows_what_the_api_answers(phone, site):
    member = phone("M0000113")
    page = member.open("/app/me/charges")
    member.check("charges")
    answered = httpx.get(f"{site.url}/v1/me/charges", headers=site.token("M0000113")).json()
    lines = answered["charges"]
    assert lines and page.locator(".charge").count() == len(lines)
    for line in lines:
        shown = page.locator(f"#charge-{line['cycle_id']}-{line['member_ref']}")
        assert shown.locator(".share").inner_text() == f"{yuan(line['share_fen'])}元"
        assert shown.locator(".aid").inner_text() == f"{yuan(line['aid_fen'])}元"
        assert shown.locator(".fee").inner_text() == f"{yuan(line['fee_fen'])}元"
        assert shown.locator(".charged").inner_text() == yuan(line["amount_fen"])
        assert shown.locator(".members").inner_text() == f"{line['sharing_members']:,}"
    total = sum(line["amount_fen"] for line in lines)
    assert page.locator(".year-total").all_inner_texts() == [yuan(total)]

    card = member.open("/app/me")
    member.check("card")
    answered = httpx.get(f"{site.url}/v1/me", headers=site.token("M0000113")).json()
    assert yuan(answered["total_shared_fen"]) in card.locator(".summary").inner_text()


def test_joining_asks_for_the_consent_every_time_and_leaving_says_what_is_owed(phone, site):
    newcomer = phone("NEW-PHONE-1")
    page = newcomer.open("/app/me")
    assert "还没有加入" in page.inner_text("main")
    page = newcomer.open("/app/join")
    newcomer.check("join")
    consent = page.get_by_label("我已阅读并同意自动扣款授权")
    assert not consent.is_checked()
    page.get_by_label("出生日期").fill("1992-03-04")
    page.get_by_label("女").check()
    page.get_by_label("所在省份").fill("浙江")
    for question in page.locator("fieldset.health").all():
        question.get_by_label("否").check()
    page.get_by_role("button", name="加入").click()
    assert "需要您同意自动扣款授权" in page.get_by_role("alert").inner_text()
    assert not page.get_by_label("我已阅读并同意自动扣款授权").is_checked()
    assert page.get_by_label("所在省份").input_value() == "浙江"  # nothing else to retype
    page.get_by_label("我已阅读并同意自动扣款授权").check()
    page.get_by_role("button", name="加入").click()
    assert "已加入大病互助计划" in page.get_by_role("status").inner_text()
    card = httpx.get(f"{site.url}/v1/me", headers=site.token("NEW-PHONE-1")).json()
    assert card["memberships"][0]["debit_mandate"]["version"]

    page = newcomer.open("/app/me/exit")
    newcomer.check("exit")
    page.get_by_role("button", name="退出").click()
    assert "请确认退出" in page.get_by_role("alert").inner_text()
    page = newcomer.open("/app/me/exit")
    page.get_by_label("我确认退出").check()
    page.get_by_role("button", name="退出").click()
    assert "已退出大病互助计划" in page.get_by_role("status").inner_text()
    assert "尚欠分摊" in page.inner_text("main")


def test_no_page_shows_another_members_name_or_birth_date(phone, site):
    with sqlite3.connect(site.data / "huzhu.db") as db:
        people = db.execute("SELECT member_ref, name, birth_date FROM member").fetchall()
    viewer = phone("M0000114")
    own = {name for ref, name, _ in people if ref == "M0000114"}
    dom = ""
    for path in (
        "/app",
        "/app/plans/critical-illness/announcement",
        "/app/me",
        "/app/me/charges",
        "/app/claims/app-2",
        "/app/jury",
        "/app/me/objections",
    ):
        dom += viewer.open(path).content()
    others = [(n, b) for ref, n, b in people if ref != "M0000114" and n and n not in own]
    leaked = [n for n, _ in others if n in dom] + [b for _, b in others if str(b) in dom]
    assert not leaked
    patient = next(name for ref, name, _ in people if ref == "M0000113")
    assert mask_name(patient) in dom  # app-1 on the 公示, masked


def test_pages_need_a_login_and_come_back_after_it(browser, site):
    visitor = Phone(browser, site, "M0000113")
    page = visitor.open("/app/me/charges")
    assert "/app/login" in page.url
    visitor.check("login")
    page.get_by_label("成员编号").fill("M0000113")
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/app/me/charges")
    visitor.open("/app")
    visitor.check("home")
    visitor.close()
