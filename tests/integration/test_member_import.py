"""Bulk member import on both databases: every row of a file is enrolled or refused with its
line and reason, on PostgreSQL's COPY path (in chunks) as on SQLite's batches."""

import json
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from broker.database import engine
from domain.db import transaction
from domain.members import Enrolment
from domain.models import Member
from domain.services import cycles
from domain.services import members as member_service
from tests.integration.scenario import CRITICAL, PUBLISH_AT, SENIOR, member
from tests.integration.support import huzhu

HEADER = "member_ref,plan,birth_date,sex,province,joined_at,payer_ref,name\n"
JOINED = "2026-01-05T10:00:00+08:00"


def adult(ref: str, payer: str = "", name: str = "") -> str:
    return f"{ref},critical-illness,1990-01-01,F,广东,{JOINED},{payer},{name}\n"


# Line 2 onwards; E1 is a member before the file is imported.
FILE = [
    adult("E1"),  # 2: already a member
    adult("K1", payer="P1"),  # 3: payer later in the file
    adult("P1"),  # 4
    adult("D1"),  # 5
    adult("D1"),  # 6: repeated in the file
    adult("K2", payer="NOBODY"),  # 7: unknown payer
    f"X1,critical-illness,1950-01-01,M,广东,{JOINED},,\n",  # 8: too old
    f"X2,critical-illness,1990-02-30,M,广东,{JOINED},,\n",  # 9: no such date
    adult("X3").replace("\n", ",surplus\n"),  # 10: more fields than the header
    "\n",  # 11: a blank line is no row
    adult("G1", payer="E1"),  # 12: paid for by a member enrolled before
    adult("K3", payer="K1"),  # 13: paid for by a member whose own payer comes later
    adult("W1", payer="LATE"),  # 14: waits for its payer ...
    adult("W1"),  # 15: ... and still is the first W1 of the file
    adult("LATE", name='"吴,小漫"'),  # 16: a quoted name with a comma
    "S1,critical-illness\n",  # 17: fewer fields than the header
]
REFUSED = {
    2: "E1 is already a member of critical-illness",
    6: "D1 is already a member of critical-illness",
    7: "payer NOBODY is not a member (enrol them first)",
    8: "age outside critical-illness's joining ages",
    10: "more fields than the header has columns",
    15: "W1 is already a member of critical-illness",
}
PAYERS = {"K1": "P1", "G1": "E1", "K3": "K1", "W1": "LATE"}


def test_every_row_is_enrolled_or_refused_with_its_line(stack, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text(HEADER + adult("E1"), encoding="utf-8")
    huzhu(stack, "members", "import", str(first))
    members = tmp_path / "members.csv"
    members.write_text(HEADER + "".join(FILE), encoding="utf-8")

    result = huzhu(stack, "members", "import", str(members), "--json", check=False)

    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    refused = {row["line"]: row["reason"] for row in report["refused"]}
    assert sorted(refused) == [2, 6, 7, 8, 9, 10, 15, 17]
    assert {line: refused[line] for line in REFUSED} == REFUSED
    assert refused[9].startswith("birth_date:")
    assert "sex" in refused[17] and "joined_at" in refused[17]
    rows = len([line for line in FILE if line.strip()])
    assert report["imported"] + len(refused) == rows
    assert enrolled() == {"E1", "K1", "P1", "D1", "G1", "K3", "W1", "LATE"}
    assert payers() == PAYERS
    with transaction(engine()) as session:
        late = session.exec(select(Member).where(Member.member_ref == "LATE")).one()
        assert late.name == "吴,小漫"


@pytest.mark.parametrize("savepoints", [member_service.SAVEPOINTS, 1, 2])
def test_chunks_keep_the_file_order_on_postgresql(postgres_stack, monkeypatch, savepoints):
    """The same rules when a file spans many chunks: a payer several chunks later, a repeat
    of a row that went in, a repeat of a row still waiting for its payer. The same again when
    the import's savepoints run out after the first chunk or two (as past 3M rows)."""
    monkeypatch.setattr(member_service, "CHUNK", 4)
    monkeypatch.setattr(member_service, "BATCH_ROWS", 2)
    monkeypatch.setattr(member_service, "SAVEPOINTS", savepoints)
    taken = []
    begin_nested = Session.begin_nested
    monkeypatch.setattr(Session, "begin_nested", lambda self: taken.append(1) or begin_nested(self))
    rows = [
        member("K1", CRITICAL, 8, payer="P1"),  # 2: waits three chunks for P1
        member("A1", CRITICAL, 30),  # 3
        member("W1", CRITICAL, 30, payer="P1"),  # 4: waits for P1 ...
        *(member(f"F{n}", CRITICAL, 30) for n in range(6)),  # 5-10
        member("A1", CRITICAL, 31),  # 11: A1 went in on line 3
        member("W1", CRITICAL, 31),  # 12: ... and is the first W1 of the file
        member("P1", CRITICAL, 40),  # 13
        member("Q1", CRITICAL, 9, payer="NOBODY"),  # 14
    ]
    report = member_service.ImportReport()

    member_service.import_members(engine(), enumerate(rows, start=2), report)

    assert sorted(report.refused) == [
        (11, "A1 is already a member of critical-illness"),
        (12, "W1 is already a member of critical-illness"),
        (14, "payer NOBODY is not a member (enrol them first)"),
    ]
    assert report.imported == len(rows) - 3 == len(enrolled())
    assert payers() == {"K1": "P1", "W1": "P1"}
    if savepoints == 1:
        assert len(taken) == 1  # the first chunk's insert
    elif savepoints == 2:
        # Then the first family round, which enrolled nobody and so spent none of the budget,
        # and the second chunk's insert.
        assert len(taken) == 3
    else:
        assert len(taken) > 3
    with transaction(engine()) as session:
        w1 = session.exec(select(Member).where(Member.member_ref == "W1")).one()
        assert w1.payer_id is not None  # line 4's W1, not line 12's


def test_families_go_in_with_their_payers_chunk_on_postgresql(postgres_stack, monkeypatch):
    """A payer staged in the same chunk as the family it pays for goes in with it, in the
    chunk's one insert; the payer is still the first member of that member_ref, any plan."""
    import_rows([member("OLD", SENIOR, 62), member("GONE", SENIOR, 62)])
    with transaction(engine()) as session:
        member_service.exit_member(session, SENIOR, "GONE", datetime.now(UTC))
    in_chunks_of(9, monkeypatch)
    rounds = count_family_rounds(monkeypatch)
    rows = [
        member("H1", CRITICAL, 40),  # 2
        member("F1", CRITICAL, 9, payer="H1"),  # 3: paid by the chunk's H1
        member("OLD", CRITICAL, 40),  # 4: OLD joins a second plan ...
        member("F2", CRITICAL, 9, payer="OLD"),  # 5: ... and pays as the older member
        member("GONE", CRITICAL, 40),  # 6: GONE left senior-cancer, joins again here ...
        member("F3", CRITICAL, 9, payer="GONE"),  # 7: ... and pays as this member
        member("TWO", SENIOR, 62),  # 8: TWO joins both plans in the chunk ...
        member("TWO", CRITICAL, 40),  # 9
        member("F4", CRITICAL, 9, payer="TWO"),  # 10: ... and pays as the first
        member("F5", CRITICAL, 9, payer="H1"),  # 11: the next chunk; H1 is a member now
    ]

    report = import_rows(rows)

    assert report.refused == []
    assert report.imported == len(rows)
    assert rounds == [], "every family went in with its chunk, none waited"
    ids = member_ids()
    assert payer_ids() == {
        "F1": ids["H1", CRITICAL],
        "F2": ids["OLD", SENIOR],
        "F3": ids["GONE", CRITICAL],
        "F4": ids["TWO", SENIOR],
        "F5": ids["H1", CRITICAL],
    }


def test_a_payer_refused_in_the_chunk_leaves_the_family_waiting_on_postgresql(
    postgres_stack, monkeypatch
):
    """A family whose payer is in its chunk but does not go in waits as before: never a
    member pointing at a payer who is not one, and the same refusals on the same lines."""
    with transaction(engine()) as session:
        cutoff = cycles.publish(session, CRITICAL, PUBLISH_AT).cutoff_at
    import_rows([joiner("EX")])
    with transaction(engine()) as session:
        member_service.exit_member(session, CRITICAL, "EX", datetime.now(UTC) + timedelta(days=31))
    in_chunks_of(6, monkeypatch)
    rows = [
        member("EARLY", CRITICAL, 40, joined_days_ago=400),  # 2: before the cut-off
        joiner("F1", payer="EARLY"),  # 3
        joiner("EX"),  # 4: a member still, though leaving ...
        joiner("F2", payer="EX"),  # 5: ... who pays for nobody new
        joiner("K1", payer="NOBODY"),  # 6: waits for a payer who never comes ...
        joiner("F3", payer="K1"),  # 7: ... and so does their family
        joiner("SELF", payer="SELF"),  # 8: the next chunk
        joiner("W1", payer="P9"),  # 9: waits for P9, three chunks on ...
        joiner("R1", payer="NOBODY"),  # 10: waits ...
        joiner("R1"),  # 11: ... so this R1 repeats it ...
        joiner("F7", payer="R1"),  # 12: ... and pays for nobody
        joiner("A0"),  # 13
        joiner("W1"),  # 14: ... so this W1 repeats line 9's ...
        joiner("F4", payer="W1"),  # 15: ... and line 9's W1 pays, once enrolled
        joiner("H2"),  # 16
        joiner("F5", payer="H2"),  # 17
        joiner("A1"),  # 18
        joiner("A2"),  # 19
        joiner("H3"),  # 20: the next chunk
        joiner("F6"),  # 21
        joiner("F6", payer="H3"),  # 22: repeats line 21's, paid for or not
        joiner("F8", payer="H3"),  # 23
        joiner("F8", payer="H3"),  # 24: repeated
        joiner("P9"),  # 25
    ]

    report = import_rows(rows)

    cut_off = (
        f"joined_at is before {cutoff.isoformat()}, the cut-off of a published cycle, "
        "whose members are fixed"
    )
    assert sorted(report.refused) == [
        (2, cut_off),
        (3, "payer EARLY is not a member (enrol them first)"),
        (4, "EX is already a member of critical-illness"),
        (5, "payer EX is not a member (enrol them first)"),
        (6, "payer NOBODY is not a member (enrol them first)"),
        (7, "payer K1 is not a member (enrol them first)"),
        (8, "payer SELF is not a member (enrol them first)"),
        (10, "payer NOBODY is not a member (enrol them first)"),
        (11, "R1 is already a member of critical-illness"),
        (12, "payer R1 is not a member (enrol them first)"),
        (14, "W1 is already a member of critical-illness"),
        (22, "F6 is already a member of critical-illness"),
        (24, "F8 is already a member of critical-illness"),
    ]
    assert report.imported == len(rows) - 13
    ids = member_ids()
    assert payer_ids() == {
        "W1": ids["P9", CRITICAL],
        "F4": ids["W1", CRITICAL],
        "F5": ids["H2", CRITICAL],
        "F8": ids["H3", CRITICAL],
    }


def test_a_payer_taken_by_another_import_on_postgresql(postgres_stack, monkeypatch):
    """Another import enrols the chunk's payer just before the chunk goes in: the payer's row
    is refused as already a member, and the family is paid for by the member that is there."""
    in_chunks_of(4, monkeypatch)
    checks = member_service._refuse_repeats_of_waiting
    taken = []

    def another_import_first(session, report):
        if not taken:
            taken.append("H1")  # before: the other import runs these checks too
            assert import_rows([member("H1", CRITICAL, 50)]).imported == 1
        checks(session, report)

    monkeypatch.setattr(member_service, "_refuse_repeats_of_waiting", another_import_first)
    rows = [member("H1", CRITICAL, 40), member("F1", CRITICAL, 9, payer="H1")]

    report = import_rows(rows)

    assert taken == ["H1"]
    assert report.refused == [(2, "H1 is already a member of critical-illness")]
    assert report.imported == 1
    assert payer_ids() == {"F1": member_ids()["H1", CRITICAL]}


def test_joining_before_a_published_cut_off_is_refused(stack):
    with transaction(engine()) as session:
        cutoff = cycles.publish(session, CRITICAL, PUBLISH_AT).cutoff_at
    rows = [
        member("EARLY", CRITICAL, 30, joined_days_ago=400),
        member("LATE", CRITICAL, 30, joined_days_ago=-30),  # joins after the cut-off
    ]
    report = member_service.ImportReport()

    member_service.import_members(engine(), enumerate(rows, start=2), report)

    assert report.imported == 1
    assert report.refused == [
        (
            2,
            f"joined_at is before {cutoff.isoformat()}, the cut-off of a published cycle, "
            "whose members are fixed",
        )
    ]
    assert enrolled() == {"LATE"}


def test_a_failing_file_enrols_nobody_on_postgresql(postgres_stack, monkeypatch):
    """The whole file is one transaction on PostgreSQL: an error halfway keeps nothing, the
    validating thread stops with it, and Python's thread switch interval, shortened for the
    import, is set back."""
    monkeypatch.setattr(member_service, "CHUNK", 4)
    monkeypatch.setattr(member_service, "BATCH_ROWS", 2)
    intervals: set[float] = set()

    def rows():
        for line in range(2, 12):
            intervals.add(sys.getswitchinterval())
            yield line, member(f"M{line}", CRITICAL, 30)
        raise OSError("the disk went away")

    threads, interval = threading.active_count(), sys.getswitchinterval()
    with pytest.raises(OSError, match="disk went away"):
        member_service.import_members(engine(), rows(), member_service.ImportReport())
    assert enrolled() == set()
    assert threading.active_count() == threads
    assert intervals == {member_service.HANDOVER_SECONDS} != {interval}
    assert sys.getswitchinterval() == interval


def joiner(ref: str, payer: str | None = None) -> Enrolment:
    """A member joining after the cut-off of the cycle a test publishes."""
    return member(ref, CRITICAL, 30, joined_days_ago=-30, payer=payer)


def in_chunks_of(rows: int, monkeypatch) -> None:
    monkeypatch.setattr(member_service, "CHUNK", rows)
    monkeypatch.setattr(member_service, "BATCH_ROWS", 1)


def count_family_rounds(monkeypatch) -> list[int]:
    """The rows each family round enrols, as they are enrolled."""
    rounds: list[int] = []
    one_round = member_service._insert_families

    def counted(session):
        if enrolled := one_round(session):
            rounds.append(enrolled)
        return enrolled

    monkeypatch.setattr(member_service, "_insert_families", counted)
    return rounds


def import_rows(rows: list[Enrolment]) -> member_service.ImportReport:
    report = member_service.ImportReport()
    member_service.import_members(engine(), enumerate(rows, start=2), report)
    return report


def member_ids() -> dict[tuple[str, str], int]:
    with transaction(engine()) as session:
        rows = session.exec(select(Member.member_ref, Member.plan, Member.id)).all()
    return {(ref, plan): member_id for ref, plan, member_id in rows}


def payer_ids() -> dict[str, int]:
    with transaction(engine()) as session:
        rows = session.exec(select(Member.member_ref, Member.payer_id)).all()
    return {ref: payer for ref, payer in rows if payer is not None}


def enrolled() -> set[str]:
    with transaction(engine()) as session:
        return set(session.exec(select(Member.member_ref)).all())


def payers() -> dict[str, str]:
    with transaction(engine()) as session:
        refs = dict(session.exec(select(Member.id, Member.member_ref)).all())
        linked = session.exec(select(Member.member_ref, Member.payer_id)).all()
    return {ref: refs[payer] for ref, payer in linked if payer is not None}
