"""A user's set-up mistakes end in two lines (what is wrong, what to do), never a traceback:
every `huzhu` command run on an empty folder, an unmigrated database, an unreachable database
or broker, and a malformed URL. And every --help reads as whole sentences at any width."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
AT = "2026-12-07T00:00:00+08:00"
PLAN = ["--plan", "critical-illness"]
# Each command with the arguments it needs to get as far as the database or the broker. `demo`
# makes its own data anywhere, `simulate` needs neither, and `fleet up` starts processes.
COMMANDS = [
    ["audit"],
    ["forecast", *PLAN],
    ["members", "import", "members.csv"],
    ["members", "exit", "M1", *PLAN],
    ["members", "settle", "M1", *PLAN],
    ["claims", "submit", "claims.jsonl"],
    ["claims", "show", "S1"],
    ["review", "decide", "S1", "--approve", "--reviewer", "dr-li"],
    ["cycle", "publish", *PLAN, "--at", AT],
    ["cycle", "close", *PLAN, "--at", AT],
    ["cycle", "show", *PLAN],
    ["cycle", "archive", "1"],
    ["announcements", "show", *PLAN],
    ["announcements", "export", *PLAN, "--html", "out.html"],
    ["objections", "file", "S1", "--member", "M2", "--reason", "seen at work"],
    ["objections", "decide", "1", "--uphold", "--reviewer", "dr-li"],
    ["jury", "request", "S1"],
    ["jury", "vote", "1", "--member", "M2", "--support"],
    ["jury", "close"],
    ["jury", "show"],
    ["db", "upgrade"],  # last: after it, the folder has a schema
]
# Runs every command in one process (the imports are the slow part), each with its own stderr.
DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from cli.entry import main
    for argv in json.loads(sys.argv[1]):
        sys.argv, err, out = ["huzhu", *argv], io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                main()
                code = 0
            except SystemExit as done:
                code = done.code or 0
            except BaseException as error:
                code, err = "raised", io.StringIO(repr(error))
        result = {"argv": argv, "code": code, "stderr": err.getvalue(), "stdout": out.getvalue()}
        print(json.dumps(result))
    """
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


def run_all(folder: Path, env: dict[str, str], commands=COMMANDS, columns=100) -> list[dict]:
    folder.mkdir(exist_ok=True)
    (folder / "members.csv").write_text(
        "member_ref,plan,birth_date,sex,province,joined_at\n"
        "M1,critical-illness,1990-01-01,F,广东,2026-01-05T10:00:00+08:00\n"
    )
    (folder / "claims.jsonl").write_text('{"submission_id": "S1"}\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=folder,
        env=clean | {"HUZHU_DATA_DIR": str(folder / "data"), "COLUMNS": str(columns)} | env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


# Off the embedded default, these first ask for the proofs' secret and log key (not set here).
NEEDS_PROOF_KEYS = ("cycle archive 1", "audit")


def assert_told(results: list[dict], cause: str, answered_first=("cycle archive 1",)) -> None:
    """Every command that failed said what is wrong (mentioning `cause`, but for those that
    refuse before they reach the database) and what to do."""
    for result in results:
        where = f"huzhu {' '.join(result['argv'])}: {result['stderr']}"
        assert result["code"] != "raised" and "Traceback" not in result["stderr"], where
        if result["code"] == 0:
            continue
        lines = result["stderr"].strip().splitlines()
        assert lines[0].startswith("error:"), where
        assert cause in lines[0] or " ".join(result["argv"]) in answered_first, where
        assert lines[1].startswith("what to do:"), where


def test_an_empty_folder_says_to_create_the_schema_or_keep_the_demo(tmp_path):
    results = run_all(tmp_path, {})
    assert_told(results, "has no Huzhu schema")
    failed = {" ".join(r["argv"]) for r in results if r["code"] != 0}
    assert "audit" in failed and "claims show S1" in failed
    assert "db upgrade" not in failed  # the one that makes the schema works on an empty folder
    schema_errors = [r for r in results if "no Huzhu schema" in r["stderr"]]
    assert len(schema_errors) >= len(COMMANDS) - 2
    assert all("huzhu db upgrade" in r["stderr"] for r in schema_errors)


def test_an_unmigrated_postgresql_style_url_on_sqlite_says_the_same(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()  # a database file with no tables
    results = run_all(tmp_path, {"HUZHU_DATABASE_URL": f"sqlite:///{empty}"})
    assert_told(results, "has no Huzhu schema", NEEDS_PROOF_KEYS)
    assert sum(r["code"] != 0 for r in results) >= len(COMMANDS) - 3


def test_an_unreachable_database_says_so(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/huzhu"
    results = run_all(tmp_path, {"HUZHU_DATABASE_URL": url})
    assert_told(results, "cannot reach the database", NEEDS_PROOF_KEYS)
    assert sum(r["code"] != 0 for r in results) >= len(COMMANDS) - 2


@pytest.mark.parametrize("url", ["nonsense", "mysql+nodriver://x/y"])
def test_a_malformed_database_url_says_what_one_looks_like(tmp_path, url):
    results = run_all(tmp_path, {"HUZHU_DATABASE_URL": url})
    assert_told(results, "HUZHU_DATABASE_URL is not a database URL")
    assert sum(r["code"] != 0 for r in results) >= len(COMMANDS) - 2


def test_an_unreachable_broker_says_so_and_the_claims_wait_in_the_database(tmp_path):
    broker = f"redis://127.0.0.1:{closed_port()}/0"
    [upgraded] = run_all(tmp_path, {}, [["db", "upgrade"]])
    assert upgraded["code"] == 0
    [submitted] = run_all(
        tmp_path, {"HUZHU_BROKER_URL": broker}, [["claims", "submit", "claims.jsonl"]]
    )
    assert_told([submitted], "cannot reach the broker")
    assert submitted["code"] == 1


def test_a_malformed_setting_names_it(tmp_path):
    [result] = run_all(tmp_path, {"HUZHU_CHUNK_SIZE": "many"}, [["audit"]])
    assert_told([result], "HUZHU_CHUNK_SIZE is not valid")
    assert result["code"] == 1


def paragraphs(command) -> list[str]:
    """The command's help text as the sentences it is written in, one string per paragraph."""
    text = (command.help or "").split("\f")[0]
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]


def every_command():
    """(path, command, what its --help lists: the sub-commands of a group) for every command."""
    import click
    import typer.main

    from cli.main import app

    root = typer.main.get_command(app)
    context = click.Context(root)
    found, groups = [], [([], root)]
    while groups:
        path, group = groups.pop()
        listed = [group.get_command(context, name) for name in group.list_commands(context)]
        found.append((path, group, listed))
        for name, command in zip(group.list_commands(context), listed, strict=True):
            if isinstance(command, click.Group):
                groups.append(([*path, name], command))
            else:
                found.append(([*path, name], command, []))
    return found


def plain(paragraph: str) -> str:
    return paragraph.replace("`", "")  # Markdown shows `code` without its backticks


@pytest.mark.parametrize("columns", [60, 2000])
def test_every_help_reads_as_whole_sentences_at_any_width(tmp_path, columns):
    commands = every_command()
    results = run_all(tmp_path, {}, [[*path, "--help"] for path, _, _ in commands], columns)
    for (path, command, listed), result in zip(commands, results, strict=True):
        assert result["code"] == 0, result
        lines = [" ".join(line.strip(" │").split()) for line in result["stdout"].splitlines()]
        # The command's own text, and the first sentence of each command its table lists.
        texts = [plain(p) for p in paragraphs(command)]
        texts += [plain(paragraphs(sub)[0]) for sub in listed if paragraphs(sub)]
        for words in texts:
            if columns > 1000:  # room for every paragraph on one line: each is on one
                assert any(words in line for line in lines), (path, words, lines)
            else:  # no words lost or run together where the text wraps
                assert " ".join(words.split()[:8]) in " ".join(lines), (path, words, lines)


def test_the_demo_says_its_data_was_discarded_and_how_to_keep_it(tmp_path):
    [result] = run_all(tmp_path, {}, [["demo", "--members", "300", "--claims", "20"]], 200)
    assert result["code"] == 0, result["stderr"]
    ending = " ".join(result["stdout"].split()).rsplit("audit: ", 1)[1]  # after the verdict
    assert "data was discarded" in ending and "huzhu demo --keep DIR" in ending
    assert "HUZHU_DATA_DIR=DIR huzhu audit" in ending
