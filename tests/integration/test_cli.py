"""The `huzhu` command as a new operator meets it: the demo, imports, and clear errors."""

import json
import subprocess
import sys

import pytest

from broker.database import engine
from domain.db import transaction
from domain.services import cycles
from tests.integration.scenario import CLOSE_AT, CRITICAL, PUBLISH_AT
from tests.integration.support import huzhu


def test_demo_runs_a_whole_cycle_and_its_books_balance(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--members", "300", "--claims", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    demo = json.loads(result.stdout)
    assert demo["audit"]["balanced"] is True and demo["audit"]["problems"] == []
    assert demo["claims"]["paid"] > 0 and demo["claims"]["rejected"] > 0
    # A patient whose account the sandbox refuses stays settled, waiting for a person.
    assert set(demo["claims"]) <= {"paid", "settled", "rejected"}
    assert {"malformed", "unknown_member", "inside_waiting_period", "not_covered"} <= set(
        demo["rejections"]
    )
    assert [c["plan"] for c in demo["cycles"]] == ["critical-illness", "senior-cancer"]
    for cycle in demo["cycles"]:
        assert cycle["status"] == "closed" and cycle["share_fen"] >= 1
        assert (
            cycle["charged_fen"] + cycle["subsidy_fen"]
            == cycle["aid_fen"]
            + cycle["fee_fen"]
            + cycle["surplus_out_fen"]
            - cycle["surplus_in_fen"]
        )
        assert cycle["charged_fen"] == cycle["share_fen"] * cycle["sharing_members"]
        assert cycle["collected_fen"] + cycle["outstanding_fen"] == cycle["charged_fen"]
        assert cycle["collected_fen"] > 0
    assert sum(cycle["paid_out_fen"] for cycle in demo["cycles"]) > 0
    assert [o["status"] for o in demo["objections"]] == ["upheld", "upheld"]
    [jury] = demo["jury"]
    assert jury["support"] + jury["oppose"] > 0 and jury["valid"] is not None
    assert not list(tmp_path.iterdir()), "the demo leaves no files behind"


def test_members_import_reports_bad_rows_by_line_and_imports_the_rest(stack, tmp_path):
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(
        "member_ref,plan,birth_date,sex,province,joined_at,payer_ref,health_declaration\n"
        "A1,critical-illness,1990-01-01,F,广东,2026-01-05T10:00:00+08:00,,\n"  # line 2: good
        "A2,critical-illness,1990-02-30,M,广东,2026-01-05T10:00:00+08:00,,\n"  # 3: no such date
        "A3,gold-plan,1990-01-01,M,广东,2026-01-05T10:00:00+08:00,,\n"  # 4: unknown plan
        "A4,critical-illness,1960-01-01,M,广东,2026-01-05T10:00:00+08:00,,\n"  # 5: too old
        "A5,critical-illness,1990-01-01,X,广东,2026-01-05T10:00:00,,\n"  # 6: sex and no offset
        "A1,critical-illness,1990-01-01,F,广东,2026-01-05T10:00:00+08:00,,\n"  # 7: A1 again
        "A6,critical-illness,2020-01-01,F,广东,2026-01-05T10:00:00+08:00,A7,\n"  # 8: payer later
        "A7,critical-illness,1988-01-01,M,广东,2026-01-05T10:00:00+08:00,,\n"  # 9: good
        "A8,critical-illness,2021-01-01,F,广东,2026-01-05T10:00:00+08:00,NOBODY,\n"  # 10
        "A9,critical-illness,1991-01-01,F,广东,2026-01-05T10:00:00+08:00,,failed\n",  # 11
        encoding="utf-8",
    )
    result = huzhu(stack, "members", "import", str(csv_file), "--json", check=False)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == 3  # A1, A7 and A6 (whose payer comes later in the file)
    refused = {row["line"]: row["reason"] for row in report["refused"]}
    assert sorted(refused) == [3, 4, 5, 6, 7, 10, 11]
    assert "birth_date" in refused[3]
    assert "unknown plan" in refused[4]
    assert "age outside" in refused[5]
    assert "sex" in refused[6] and "joined_at" in refused[6]
    assert "already a member" in refused[7]
    assert "payer NOBODY" in refused[10]
    assert "health declaration" in refused[11]


def test_errors_say_what_is_wrong_and_what_to_do(sqlite_stack):
    huzhu(sqlite_stack, "db", "upgrade")
    missing = huzhu(sqlite_stack, "claims", "show", "no-such-claim", check=False)
    assert (
        missing.returncode == 1 and "no claim with submission id 'no-such-claim'" in missing.stderr
    )
    nothing = huzhu(
        sqlite_stack,
        "cycle",
        "close",
        "--plan",
        CRITICAL,
        "--at",
        CLOSE_AT.isoformat(),
        check=False,
    )
    assert nothing.returncode == 1 and "publish one first" in nothing.stderr
    naive = huzhu(
        sqlite_stack,
        "cycle",
        "publish",
        "--plan",
        CRITICAL,
        "--at",
        "2026-12-07T00:00",
        check=False,
    )
    assert naive.returncode == 1 and "+08:00" in naive.stderr
    plan = huzhu(sqlite_stack, "cycle", "show", "--plan", "gold", check=False)
    assert plan.returncode == 1 and "critical-illness" in plan.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["db", "upgrade"],
        ["members", "import"],
        ["members", "exit"],
        ["claims", "submit"],
        ["claims", "show"],
        ["review", "queue"],
        ["review", "take"],
        ["review", "release"],
        ["review", "decide"],
        ["review", "escalate"],
        ["cycle", "publish"],
        ["cycle", "close"],
        ["cycle", "show"],
        ["audit"],
    ],
)
def test_every_command_has_help(sqlite_stack, command):
    result = huzhu(sqlite_stack, *command, "--help")
    assert "Usage" in result.stdout
    if command:  # every leaf command speaks JSON for scripts
        assert "--json" in result.stdout


def test_members_leave_after_their_family_and_never_before_a_published_cut_off(stack, tmp_path):
    csv_file = tmp_path / "family.csv"
    csv_file.write_text(
        "member_ref,plan,birth_date,sex,province,joined_at,payer_ref\n"
        "P1,critical-illness,1985-01-01,F,广东,2025-01-05T10:00:00+08:00,\n"
        "K1,critical-illness,2015-01-01,M,广东,2025-01-06T10:00:00+08:00,P1\n",
        encoding="utf-8",
    )
    huzhu(stack, "members", "import", str(csv_file))
    refused = huzhu(stack, "members", "exit", "P1", "--plan", CRITICAL, check=False)
    assert refused.returncode == 1 and "family member(s); they must leave first" in refused.stderr
    left = huzhu(stack, "members", "exit", "K1", "--plan", CRITICAL, "--json")
    assert json.loads(left.stdout)["member_ref"] == "K1"
    again = huzhu(stack, "members", "exit", "K1", "--plan", CRITICAL, check=False)
    assert again.returncode == 1 and "already left" in again.stderr

    with transaction(engine()) as session:
        cycles.publish(session, CRITICAL, PUBLISH_AT)
    backdated = huzhu(
        stack,
        "members",
        "exit",
        "P1",
        "--plan",
        CRITICAL,
        "--at",
        "2025-06-01T00:00:00+08:00",
        check=False,
    )
    assert backdated.returncode == 1 and "cut-off of a published cycle" in backdated.stderr
    huzhu(stack, "members", "exit", "P1", "--plan", CRITICAL, "--at", CLOSE_AT.isoformat())


def test_a_misspelt_column_is_refused_rather_than_guessed(sqlite_stack, tmp_path):
    csv_file = tmp_path / "typo.csv"
    csv_file.write_text(
        "member_ref,plan,birth_date,sex,province,joined_at,helth_declaration\n"
        "A1,critical-illness,1990-01-01,F,广东,2026-01-05T10:00:00+08:00,failed\n",
        encoding="utf-8",
    )
    result = huzhu(sqlite_stack, "members", "import", str(csv_file), check=False)
    assert result.returncode == 1
    assert "unknown column(s) helth_declaration" in result.stderr
    assert "health_declaration" in result.stderr  # the hint lists the right name
