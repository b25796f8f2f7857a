"""On PostgreSQL each cycle's charges live in a partition of their own, from the migration on."""

import json

import pytest
from alembic import command
from sqlalchemy import text

from broker.database import engine
from broker.migrate import _config
from broker.proofkeys import proof_keys
from broker.submit import submit_claim
from domain.calendar import charge_day, next_announcement_day, start_of_day
from domain.db import drop_schema, transaction
from domain.services import audit as audit_service
from domain.services import cycles as cycle_service
from tests.integration.scenario import (
    ANNOUNCE_ON,
    CLOSE_AT,
    CRITICAL,
    NOW_UTC,
    PUBLISH_AT,
    enrol,
    membership,
    submission,
)
from tests.integration.support import huzhu
from tests.integration.test_collection import cycle_money, fleet, provider, settled  # noqa: F401
from tests.integration.test_redelivery import charge_everything, prepare_announced_cycle


def partitions_and_rows() -> dict[str, int]:
    with engine().connect() as connection:
        rows = connection.execute(
            text("SELECT tableoid::regclass::text, count(*) FROM charge GROUP BY 1")
        ).all()
    return dict(rows)


def test_a_cycle_charges_into_its_own_partition(postgres_stack):
    prepare_announced_cycle(critical=120)
    with transaction(engine()) as session:
        cycle = cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=50)
    charge_everything(cycle.id)
    assert partitions_and_rows() == {f"charge_c{cycle.id}": 120}
    with engine().connect() as connection:
        kind = connection.execute(
            text("SELECT relkind FROM pg_class WHERE relname = 'charge'")
        ).scalar()
    assert kind == "p"  # partitioned


def test_the_migration_moves_existing_charges_into_partitions(postgres_stack):
    drop_schema(engine())
    with engine().begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        command.upgrade(_config(connection), "3958cc0027d9")  # before partitioning
        connection.execute(
            text(
                "INSERT INTO sharingcycle (plan, announce_on, charge_on, status, cutoff_at,"
                " sharing_members, cases, aid_fen, fee_fen, surplus_in_fen, surplus_out_fen,"
                " share_fen, cap_subsidy_fen, annual_cap_subsidy_fen, subsidy_fen, charged_fen,"
                " chunk_size, chunks, first_member_id, last_member_id, annual_cap_binds,"
                " collection_round, debit_batch_size, debit_batches, first_account_id)"
                " SELECT 'critical-illness', d, d + 7, 'closed', d, 2, 1, 0, 0, 0, 0, 1, 0, 0,"
                " 0, 2, 50, 1, 1, 2, false, 0, 1000, 1, 1"
                " FROM (VALUES (date '2026-01-07'), (date '2026-01-21')) AS v(d)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO charge (cycle_id, member_id, account_id, amount_fen, subsidy_fen)"
                " SELECT c.id, m, m, 1, 0 FROM sharingcycle c, generate_series(1, 2) AS m"
            )
        )
    with engine().begin() as connection:
        command.upgrade(_config(connection), "head")
        ids = connection.execute(text("SELECT id FROM sharingcycle ORDER BY id")).scalars().all()
    assert partitions_and_rows() == {f"charge_c{i}": 2 for i in ids}


@pytest.mark.usefixtures("provider", "fleet")  # the payment sandbox and a worker
def test_an_old_cycle_is_archived_once_collected_and_the_next_one_runs_on(postgres_stack):
    enrol(membership(20, 0))
    submit_claim(submission("first", "C0005", "C73"))
    settled("first")
    huzhu(postgres_stack, "cycle", "publish", "--plan", CRITICAL, "--at", PUBLISH_AT.isoformat())
    closing = huzhu(postgres_stack, "cycle", "archive", "1", check=False)
    assert closing.returncode == 1 and "only a closed cycle" in closing.stderr
    huzhu(postgres_stack, "cycle", "close", "--plan", CRITICAL, "--at", CLOSE_AT.isoformat())
    first = cycle_money(ANNOUNCE_ON)["id"]
    this_year = huzhu(postgres_stack, "cycle", "archive", str(first), check=False)
    assert this_year.returncode == 1 and "only cycles of past years" in this_year.stderr
    with engine().begin() as connection:  # as if it had been charged a year earlier
        connection.execute(
            text("UPDATE sharingcycle SET charge_on = charge_on - 365 WHERE id = :id"),
            {"id": first},
        )
        # One member joined lately: a waiting-period illness would refund from these charges.
        connection.execute(
            text("UPDATE member SET joined_at = now() - interval '20 days' WHERE id = 1")
        )
    waiting = huzhu(postgres_stack, "cycle", "archive", str(first), check=False)
    assert waiting.returncode == 1 and "1 members still inside their waiting" in waiting.stderr
    with engine().begin() as connection:
        connection.execute(
            text("UPDATE member SET joined_at = now() - interval '300 days' WHERE id = 1")
        )

    archived = json.loads(huzhu(postgres_stack, "cycle", "archive", str(first), "--json").stdout)
    assert (archived["table"], archived["rows"]) == (f"charge_c{first}", 20)
    assert partitions_and_rows() == {}  # detached: the live table no longer holds them
    with engine().connect() as connection:
        kept = connection.execute(text(f"SELECT count(*) FROM charge_c{first}")).scalar()
    assert kept == 20  # a table of its own, ready to be dumped
    again = json.loads(huzhu(postgres_stack, "cycle", "archive", str(first), "--json").stdout)
    assert again["archived_at"] == archived["archived_at"]

    # The next cycle is announced, charged and audited as if nothing had happened.
    second_on = next_announcement_day(ANNOUNCE_ON)
    submit_claim(submission("second", "C0006", "C50.9"))
    settled("second")
    huzhu(
        postgres_stack,
        "cycle",
        "publish",
        "--plan",
        CRITICAL,
        "--at",
        start_of_day(second_on).isoformat(),
    )
    huzhu(
        postgres_stack,
        "cycle",
        "close",
        "--plan",
        CRITICAL,
        "--at",
        start_of_day(charge_day(second_on)).isoformat(),
    )
    second = cycle_money(second_on)["id"]
    assert partitions_and_rows() == {f"charge_c{second}": 19}  # C0005 left with the payout
    with transaction(engine()) as session:
        report = audit_service.audit(session, NOW_UTC, keys=proof_keys())
    assert report.balanced, report.problems


def test_archiving_needs_postgresql(sqlite_stack):
    refused = huzhu(sqlite_stack, "cycle", "archive", "1", check=False)
    assert refused.returncode == 1 and "no partition to archive" in refused.stderr
