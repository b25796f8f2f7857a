"""The announcement (公示) as a static HTML page in Chinese, readable on a phone."""

from html import escape

from domain.announcements import Case
from domain.money import yuan
from domain.services.announcements import Announcement

STATUS = {
    "announced": "公示中",
    "objected": "有异议，复核中",
    "settled": "已分摊",
    "paid": "已划拨",
}
SEX = {"M": "男", "F": "女"}

STYLE = """
body{margin:0;font-family:"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
background:#f4f6f8;color:#1f2933}
header{background:#1677ff;color:#fff;padding:20px 16px}
header h1{margin:0 0 6px;font-size:20px} header p{margin:2px 0;font-size:14px;opacity:.9}
.summary{display:flex;gap:8px;padding:12px 16px}
.summary div{flex:1;background:#fff;border-radius:10px;padding:10px;text-align:center}
.summary b{display:block;font-size:20px;color:#1677ff}
.case{background:#fff;border-radius:12px;margin:10px 16px;padding:14px 16px;
box-shadow:0 1px 3px rgba(0,0,0,.06)}
.case h2{margin:0;font-size:18px} .meta{color:#52606d;font-size:14px;margin:4px 0}
.illness{font-size:16px;margin:8px 0 4px} .amount{color:#e8590c;font-weight:bold}
.foot{display:flex;justify-content:space-between;align-items:center;margin-top:8px;font-size:13px}
.object{border:1px solid #1677ff;color:#1677ff;border-radius:16px;padding:4px 12px;
text-decoration:none}
.status{color:#52606d} footer{padding:16px;font-size:12px;color:#52606d}
"""


def render(page: Announcement) -> str:
    cycle = page.cycle
    cases = "\n".join(_case(case) for case in page.cases) or "<p class='meta'>本期无公示案例</p>"
    return f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.plan.name_zh)} 公示 {cycle.announce_on}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>{escape(page.plan.name_zh)} · 互助案例公示</h1>
<p>公示日 {cycle.announce_on} · 分摊日 {cycle.charge_on}</p>
<p>异议期至 {escape(page.objections_until[:10])} 零时</p>
</header>
<section class="summary">
<div><b>{len(page.cases)}</b>本期案例</div>
<div><b>{yuan(cycle.share_fen)}</b>预计每人分摊(元)</div>
<div><b>{cycle.sharing_members:,}</b>分摊成员</div>
</section>
{cases}
<footer>
<p>姓名已脱敏，不公示身份证号与病历。每位成员对每个案例的分摊不超过
{yuan(page.plan.per_patient_cap_fen)} 元，全年不超过 {yuan(page.plan.annual_cap_fen)} 元，超出部分由平台承担。</p>
<p>对案例有异议？在异议期内由本计划成员提出“我有异议”，附上证据，案例将重新调查。</p>
</footer>
</body>
</html>
"""


def _case(case: Case) -> str:
    return f"""<article class="case" id="case-{escape(case.case_ref)}">
<h2>{escape(case.masked_name)}</h2>
<p class="meta">{case.age}岁 · {SEX.get(case.sex, "")} · {escape(case.province)}</p>
<p class="illness">{escape(case.illness)} · 互助金 <span class="amount">{_wan(case.amount_fen)}</span></p>
<p class="meta">加入{case.days_since_joining}天，已分摊{yuan(case.shared_fen)}元</p>
<div class="foot"><span class="status">{STATUS.get(case.status, case.status)}</span>
<a class="object" href="#case-{escape(case.case_ref)}" title="案例编号 {escape(case.case_ref)}">我有异议</a></div>
</article>"""


def _wan(fen: int) -> str:
    """Amounts as a member reads them: 30万元."""
    wan = fen / 1_000_000
    return f"{wan:g}万元" if wan >= 1 else f"{yuan(fen)}元"
