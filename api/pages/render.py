"""The member's pages rendered from Jinja2 templates: every amount in yuan to the fen, moments
in Shanghai time, and one announcement template for the app and for the static export."""

from datetime import date, datetime
from functools import cache
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from domain.calendar import SHANGHAI
from domain.claims import REASON_FOR_MEMBERS_ZH
from domain.money import yuan
from domain.plans import get_plan

TEMPLATES = Path(__file__).parent / "templates"
STATUS_ZH = {
    "announced": "公示中",
    "objected": "有异议，复核中",
    "settled": "已分摊",
    "paid": "已划拨",
}
SEX_ZH = {"M": "男", "F": "女"}
CLAIM_ZH = {
    "received": "已收到",
    "under_review": "审核中",
    "needs_review": "人工审核中",
    "awaiting_second_review": "人工审核中（复核）",
    "investigating": "调查中",
    "approved": "已通过",
    "rejected": "未通过",
    "scheduled": "已通过，等待公示",
    "announced": "公示中",
    "objected": "有异议，复核中",
    "settled": "已分摊",
    "paid": "已划拨",
}
OBJECTION_ZH = {"open": "待复核", "upheld": "异议成立，案例撤出", "dismissed": "异议不成立"}
DEBIT_ZH = {
    "due": "待扣款",
    "sending": "扣款中",
    "collected": "已扣款",
    "failed": "扣款失败，将重试",
}


def shanghai(moment: datetime | date | str | None, with_time: bool = True) -> str:
    """A moment as members read the calendar: Asia/Shanghai, to the minute."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        return moment.isoformat()
    local = moment.astimezone(SHANGHAI)
    return local.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def part(text: str) -> str:
    """An id as one segment of a page's address (an app's ids may hold / ? or #)."""
    return quote(text, safe="")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a missing figure is a bug, never an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(yuan=yuan, shanghai=shanghai, part=part)
    env.globals.update(
        STATUS_ZH=STATUS_ZH,
        SEX_ZH=SEX_ZH,
        CLAIM_ZH=CLAIM_ZH,
        OBJECTION_ZH=OBJECTION_ZH,
        DEBIT_ZH=DEBIT_ZH,
        REASON_ZH={str(code): words for code, words in REASON_FOR_MEMBERS_ZH.items()},
        plan_rules=get_plan,
    )
    return env


def render(template: str, **context) -> str:
    context.setdefault("who", None)
    context.setdefault("interactive", True)
    return environment().get_template(template).render(**context)


def announcement_html(view, interactive: bool = False, **context) -> str:
    """The 公示 page: in the app with its 我有异议 forms, or as the static export for archives."""
    return render("announcement.html", page=view, interactive=interactive, **context)
