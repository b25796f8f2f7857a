"""What the public announcement shows of a case: never a full name, an ID number or a record."""

from dataclasses import dataclass
from datetime import date

from domain.calendar import age_on


def mask_name(name: str | None) -> str:
    """吴小漫 -> 吴*漫, 张三 -> 张*, a single character is masked entirely; first and last kept
    only for Chinese names of three characters or more. A name in another script keeps its
    first letter only, and does not show its length: Li Lei -> L***."""
    name = (name or "").strip()
    if len(name) <= 1:
        return "*"
    if not all(_is_han(c) or c in "·•" for c in name):
        return name[0] + "***"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def _is_han(character: str) -> bool:
    return "\u3400" <= character <= "\u9fff" or "\uf900" <= character <= "\ufaff"


@dataclass(frozen=True)
class Case:
    case_ref: str  # the submission id: what an objection names
    status: str  # announced, objected, settled, paid
    masked_name: str
    age: int
    sex: str
    province: str
    illness: str
    amount_fen: int
    days_since_joining: int
    shared_fen: int  # what the member has paid in shares so far


def public_case(
    case_ref: str,
    status: str,
    shared_fen: int,
    name: str | None,
    birth_date: date,
    sex: str,
    province: str,
    illness: str,
    amount_fen: int,
    diagnosed_on: date,
    joined_on: date,
    announce_on: date,
) -> Case:
    return Case(
        case_ref=case_ref,
        status=status,
        masked_name=mask_name(name),
        age=age_on(birth_date, diagnosed_on),
        sex=sex,
        province=province,
        illness=illness,
        amount_fen=amount_fen,
        days_since_joining=(announce_on - joined_on).days,
        shared_fen=shared_fen,
    )
