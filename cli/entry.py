"""The `huzhu` entry point, and what a user's set-up mistake means in two lines: what is wrong
and what to do. A missing schema, an unreachable database or broker, a malformed URL or setting
never ends in a traceback."""

import re
import sys

from kombu.exceptions import OperationalError as BrokerUnreachable
from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

MISSING_TABLE = re.compile(r"no such table|relation .* does not exist|UndefinedTable")
# The driver's words for a server it could not reach (psycopg) or a file it could not open
# (SQLite); any other database error is not a set-up mistake and keeps its traceback.
UNREACHABLE = re.compile(
    r"connection failed|Connection refused|could not connect|could not translate host name"
    r"|timeout expired|unable to open database file"
)
SCHEMA_HINT = (
    "run `huzhu db upgrade` to create the schema here, or `huzhu demo --keep DIR` and then "
    "`HUZHU_DATA_DIR=DIR huzhu …` to explore the demo's data"
)


def main() -> None:
    """Run `huzhu`. The command's modules are imported here, inside the guard: reading the
    settings at import is where a malformed setting first shows."""
    try:
        from cli.main import app

        app()  # click handles its own errors (usage, --help) and exits; the rest come here
    except Exception as error:
        explained = explain(error)
        if explained is None:
            raise
        from cli.output import errors

        errors.print(f"[bold red]error:[/] {explained[0]}")
        errors.print(f"[yellow]what to do:[/] {explained[1]}")
        sys.exit(1)


def explain(error: BaseException) -> tuple[str, str] | None:
    """(what is wrong, what to do) for an error a user's set-up causes; None for anything
    else (a defect, which must keep its traceback)."""
    from broker.settings import get_settings  # settings may be what failed: read them late

    if isinstance(error, ValidationError) and error.title == "Settings":
        first = error.errors()[0]
        name = "HUZHU_" + "_".join(str(part) for part in first["loc"]).upper()
        return f"{name} is not valid: {first['msg']}", "fix or unset it (see the README's settings)"
    if isinstance(error, (ArgumentError, NoSuchModuleError)):
        return (
            f"HUZHU_DATABASE_URL is not a database URL: {error}",
            "use e.g. postgresql+psycopg://user@host:5432/huzhu, or unset it for SQLite",
        )
    if isinstance(error, (OperationalError, ProgrammingError)):
        database = _database(get_settings)
        if MISSING_TABLE.search(str(error.orig)):
            return f"the database at {database} has no Huzhu schema", SCHEMA_HINT
        if isinstance(error, OperationalError) and UNREACHABLE.search(str(error.orig)):
            return (
                f"cannot reach the database at {database}: {_first_line(error.orig)}",
                "start it, or point HUZHU_DATABASE_URL at one that runs",
            )
    if isinstance(error, BrokerUnreachable) or _unknown_transport(error):
        return (
            f"cannot reach the broker at {_broker(get_settings)}: {_first_line(error)}",
            "start Redis, or point HUZHU_BROKER_URL at one that runs (unset: the file queue)",
        )
    return None


def _unknown_transport(error: BaseException) -> bool:
    return isinstance(error, KeyError) and "No such transport" in str(error)


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _database(get_settings) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(get_settings().database).render_as_string(hide_password=True)
    except Exception:  # the URL itself may be what is wrong
        return "HUZHU_DATABASE_URL"


def _broker(get_settings) -> str:
    url = get_settings().broker_url or "the file queue"
    return re.sub(r"//[^@/]*@", "//***@", url)  # never print a password
