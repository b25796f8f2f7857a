"""How PostgreSQL answers a member's card and charges on a large membership: builds a scratch
database of N members with one closed cycle (the charging benchmark's data), then prints
EXPLAIN ANALYZE of every statement `GET /v1/me` and `GET /v1/me/charges` run for one payer.

    python -m benchmarks.charges_plan --members 10000000
"""

import argparse
import tempfile
from datetime import date
from pathlib import Path

from sqlalchemy import event

from benchmarks.charging import add_members, close, publish_with_cases
from benchmarks.common import proof_keys_of, scratch_database, stopwatch
from broker.app import reconfigure
from broker.database import engine
from broker.migrate import upgrade
from broker.settings import Settings
from domain.db import transaction
from domain.services import statements

PAYER = "B000000009"  # pays for B000000010 (one in ten members is paid for by the one before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    members = parser.parse_args().members
    with (
        tempfile.TemporaryDirectory(prefix="huzhu-bench-") as folder,
        scratch_database(f"charges_plan_{members}") as url,
    ):
        reconfigure(
            Settings(data_dir=Path(folder), database_url=url, **proof_keys_of(Path(folder)))
        )
        db = engine()
        upgrade(db)
        with stopwatch() as built:
            add_members(db, members)
            publish_with_cases()
            close(db)
        print(f"{members:,} members and one closed cycle built in {built[0]:.0f} s")
        ran: list[tuple[str, object]] = []

        def keep(_conn, _cursor, statement, parameters, _context, _many) -> None:
            ran.append((statement, parameters))

        event.listen(db, "before_cursor_execute", keep)
        with transaction(db) as session:
            page = statements.charges(session, PAYER, None, 12)
            statements.card(session, PAYER, date.today())
        event.remove(db, "before_cursor_execute", keep)
        print(f"{len(page.lines)} charge lines for {PAYER} and family\n")
        with db.connect() as connection:
            for statement, parameters in ran:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                plan = connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters
                ).scalars()
                print(statement.strip()[:160].replace("\n", " "), "\n  ", "\n   ".join(plan), "\n")
        db.dispose()


if __name__ == "__main__":
    main()
