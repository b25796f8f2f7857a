"""The import's CSV rows before any database: line numbers, empty fields, short and long rows."""

import csv
import io

from cli.main import _enrolments
from domain.members import Applicant, Enrolment

HEADER = "member_ref,plan,birth_date,sex,province,joined_at,payer_ref,health_declaration\n"
ROW = "A1,critical-illness,1990-01-01,F,广东,2026-01-05T10:00:00+08:00"


def rows_of(text: str) -> tuple[dict[int, Applicant | Enrolment | str], int]:
    reader = csv.reader(io.StringIO(HEADER + text, newline=""))
    header = next(reader)
    moved: list[int] = []
    rows = dict(_enrolments(reader, header, moved.append))
    return rows, sum(moved)


def test_each_row_keeps_the_line_it_ends_on_and_the_bar_counts_every_line():
    rows, moved = rows_of(
        f"{ROW},,\n"  # 2
        "\n"  # 3: blank, no row
        f'{ROW.replace("A1", "A2")},"P\n1",\n'  # 4-5: a quoted field over two lines
        f"{ROW.replace('A1', 'A3')},,\n"  # 6
    )
    assert sorted(rows) == [2, 5, 6]
    assert "payer_ref" in rows[5] and "control characters" in rows[5]
    assert moved == 4  # the rows csv read, the blank one included


def test_an_empty_field_takes_its_default_and_a_missing_one_is_refused():
    rows, _ = rows_of(f"{ROW},,\n{ROW}\nA1,critical-illness\n{ROW},,,extra\n")
    assert isinstance(rows[2], Applicant | Enrolment) and rows[2].health_declaration == "passed"
    assert rows[2].payer_ref is None
    assert "health_declaration" in rows[3]  # left off the end of the row: no answer at all
    assert "birth_date" in rows[4] and "province" in rows[4]
    assert rows[5] == "more fields than the header has columns"
