"""What the public announcement shows of a case: never a full name, an ID number or a record."""

from dataclasses import dataclass
from datetime import date

from domain.calendar import age_on


def mask_name(name: str | None) -> str:
    """吴小漫 -> 吴*漫, 张三 -> 张*, one character stays masked entirely; first and last kept
    only for names of three characters or more."""
    if not name:
        return "*"
    name = name.strip()
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


@dataclass(frozen=True)
class Case:
    masked_name: str
    age: int
    sex: str
    province: str
    illness: str
    amount_fen: int
    days_since_joining: int


def public_case(
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
        masked_name=mask_name(name),
        age=age_on(birth_date, diagnosed_on),
        sex=sex,
        province=province,
        illness=illness,
        amount_fen=amount_fen,
        days_since_joining=(announce_on - joined_on).days,
    )
