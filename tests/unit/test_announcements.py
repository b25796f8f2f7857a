"""What an announcement shows of a case: a masked name, the age at diagnosis, days of membership."""

from datetime import date

import pytest

from domain.announcements import Case, mask_name, public_case


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("吴小漫", "吴*漫"),
        ("张三", "张*"),
        ("欧阳娜娜", "欧**娜"),
        ("吴", "*"),
        (" 张三 ", "张*"),
        ("", "*"),
        (None, "*"),
        ("   ", "*"),
        ("Li Lei", "L***"),  # another script: the first letter only, no length
        ("Анна Петрова", "А***"),
        ("买买提·艾力", "买****力"),
        ("John", "J***"),
    ],
)
def test_mask_name_keeps_at_most_the_first_and_last_character(
    name: str | None, masked: str
) -> None:
    assert mask_name(name) == masked


def test_public_case_shows_the_age_at_diagnosis_and_the_days_since_joining() -> None:
    case = public_case(
        case_ref="S-1",
        status="announced",
        shared_fen=1_234,
        name="吴小漫",
        birth_date=date(1990, 6, 10),
        sex="F",
        province="浙江",
        illness="甲状腺癌",
        amount_fen=30_000_000,
        diagnosed_on=date(2026, 6, 9),  # the day before turning 36
        joined_on=date(2026, 1, 1),
        announce_on=date(2026, 6, 21),
    )
    assert case == Case(
        case_ref="S-1",
        status="announced",
        masked_name="吴*漫",
        age=35,
        sex="F",
        province="浙江",
        illness="甲状腺癌",
        amount_fen=30_000_000,
        days_since_joining=171,
        shared_fen=1_234,
    )
