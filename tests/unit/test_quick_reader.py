"""The import's quick row reader against the model it stands in for: every row the quick reader
takes, `Enrolment` takes with the same values."""

from datetime import UTC, date, datetime, timedelta, timezone
from itertools import compress

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.members import Applicant, Enrolment, quick_reader
from domain.plans import load_plans

PLANS = load_plans()
HEADERS = [
    ["member_ref", "plan", "birth_date", "sex", "province", "joined_at", "payer_ref", "name"],
    ["member_ref", "plan", "birth_date", "sex", "province", "joined_at"],
    [
        "name",
        "joined_at",
        "province",
        "sex",
        "birth_date",
        "plan",
        "member_ref",
        "jury_certified",
        "health_declaration",
        "credit_assessment",
        "payer_ref",
    ],
    ["member_ref", "plan", "birth_date", "sex", "province", "joined_at", "member_ref"],
]
# No lone surrogates: a UTF-8 file cannot hold them.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=110)
SPACE = st.sampled_from([" ", "\t", "\u3000", "\u00a0", "\u2028", "\x1c", "\x85", "\u200b"])


def edgy(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value gone wrong: padded with some kind of space, cut, any text, or empty."""
    padded = st.tuples(SPACE, values, SPACE).map(lambda t: t[0] + t[1] + t[2])
    cut = values.flatmap(lambda v: st.integers(0, len(v)).map(lambda n: v[:n]))
    return st.one_of(padded, cut, TEXT, st.just(""))


OFFSET = st.from_regex(r"Z|[+-][0-9]{2}:[0-9]{2}|[+-][0-9]{2}|[+-][0-9]{4}", fullmatch=True)
SHAPED_MOMENT = st.tuples(
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?", fullmatch=True),
    OFFSET,
).map("".join)
WHOLE_SECONDS = st.datetimes(
    timezones=st.sampled_from([timezone(timedelta(hours=8)), UTC, timezone(-timedelta(hours=5))])
).map(lambda moment: moment.replace(microsecond=0).isoformat())
# Each field: the values a file usually holds (good ones), and odd ones, good or not.
FIELDS = {
    "member_ref": (
        st.from_regex(r"M[0-9]{8}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9\-一-龥 ,]{1,70}", fullmatch=True),
    ),
    "plan": (st.sampled_from(list(PLANS)), st.just("public-transport")),
    "birth_date": (
        st.dates().map(str),
        st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    ),
    "sex": (st.sampled_from(["M", "F"]), st.sampled_from(["m", "X", "MF"])),
    "province": (st.sampled_from(["广东", "内蒙古"]), st.sampled_from(["浙江" * 16, "浙江" * 17])),
    "joined_at": (
        WHOLE_SECONDS,
        st.one_of(
            st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
            st.datetimes().map(datetime.isoformat),  # naive
            SHAPED_MOMENT,
            st.tuples(st.datetimes().map(datetime.isoformat), OFFSET).map("".join),
        ),
    ),
    "payer_ref": (st.sampled_from(["", "P1"]), st.sampled_from(["x" * 64, "x" * 65])),
    "name": (st.sampled_from(["", "吴小漫"]), st.sampled_from(["吴,小漫", "名" * 100, "名" * 101])),
    "jury_certified": (
        st.sampled_from(["", "true", "false"]),
        st.sampled_from(["True", "1", "yes"]),
    ),
    "health_declaration": (st.sampled_from(["", "passed"]), st.sampled_from(["failed", "Passed"])),
    "credit_assessment": (st.sampled_from(["", "passed"]), st.sampled_from(["failed", "maybe"])),
}


@st.composite
def rows(draw) -> tuple[list[str], list[str]]:
    """A header and a row under it: mostly usual fields, some odd or gone wrong, now and then
    too short or too long."""
    header = draw(st.sampled_from(HEADERS))
    row = []
    for column in header:
        usual, odd = FIELDS[column]
        kind = draw(st.integers(0, 9))
        row.append(draw(usual if kind < 8 else odd if kind == 8 else edgy(usual | odd)))
    if draw(st.integers(0, 9)) == 0:
        row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(TEXT, max_size=2))
    return header, row


def model(header: list[str], row: list[str]) -> Enrolment | None:
    """What the CLI's model path makes of the row (cli/main.py `_enrolment`)."""
    if len(row) > len(header):
        return None
    fields = dict(compress(zip(header, row, strict=False), row))
    if len(row) < len(header):
        fields.update(dict.fromkeys(header[len(row) :]))
    try:
        return Enrolment.model_validate(fields)
    except ValidationError:
        return None


@settings(max_examples=1500, deadline=None)
@given(rows())
@example((HEADERS[0], ["M1", "critical-illness", "1990-01-01", "F", "广东", "2026-01-05T10:00"]))
@example(
    (HEADERS[0], ["M1", "critical-illness", "1990-01-01", "F", "广东", "2026-01-05T10:00+05:75"])
)
@example((HEADERS[0], ["M1", "critical-illness", "19900101", "F", "广东", "2026-01-05T10:00Z"]))
@example((HEADERS[0], ["M1 ", "critical-illness", "1990-01-01", "F", "广东", "2026-01-05T10:00Z"]))
def test_a_row_the_quick_reader_takes_is_the_same_enrolment(header_row) -> None:
    header, row = header_row
    quick = quick_reader(header, PLANS)(row)
    if quick is None:
        return  # the model judges it, as before
    enrolment = model(header, row)
    assert enrolment is not None, row
    assert quick == Applicant(*(getattr(enrolment, field) for field in Applicant._fields))
    assert quick.joined_at.utcoffset() == enrolment.joined_at.utcoffset()


def test_the_quick_reader_takes_the_usual_rows() -> None:
    read = quick_reader(HEADERS[0], PLANS)
    usual = [
        "M00000001",
        "critical-illness",
        "1990-01-01",
        "F",
        "广东",
        "2026-01-05T10:00:00+08:00",
    ]
    assert read([*usual, "", ""]) == Applicant(
        "M00000001",
        "critical-illness",
        None,
        date(1990, 1, 1),
        "F",
        "广东",
        datetime(2026, 1, 5, 2, tzinfo=UTC),
        None,
        False,
        "passed",
        "passed",
    )
    assert read([*usual, "M00000000", "王芳"]).payer_ref == "M00000000"
    assert read([*usual, "", " 王芳"]) is None  # the model strips it
