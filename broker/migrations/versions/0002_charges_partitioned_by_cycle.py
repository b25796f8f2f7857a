"""charges partitioned by cycle on PostgreSQL

Revision ID: 0002_charge_partitions
Revises: 3958cc0027d9
Create Date: 2026-11-29 09:00:00

The charge table becomes LIST-partitioned by cycle_id, one partition per cycle (charge_c<id>),
so that a close writes into a table of its own and old cycles can be detached and archived.
Existing rows are moved into their cycle's partition. SQLite keeps one plain table. On both,
the foreign key to sharingcycle goes: checked per row, it doubled the cost of charging.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0002_charge_partitions"
down_revision: str | None = "3958cc0027d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COLUMNS = (
    "cycle_id, member_id, account_id, amount_fen, subsidy_fen, debit_status, debit_attempts,"
    " debit_key, collected_fen, debited_at"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_without_foreign_key()
        return
    op.execute("ALTER TABLE charge RENAME TO charge_unpartitioned")
    op.execute("ALTER INDEX ix_charge_cycle_account RENAME TO ix_charge_unpartitioned_account")
    op.execute("ALTER TABLE charge_unpartitioned RENAME CONSTRAINT charge_pkey TO charge_old_pkey")
    op.execute(
        "CREATE TABLE charge (LIKE charge_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        " PARTITION BY LIST (cycle_id)"
    )
    op.execute("ALTER TABLE charge ADD PRIMARY KEY (cycle_id, member_id)")
    op.execute("CREATE INDEX ix_charge_cycle_account ON charge (cycle_id, account_id)")
    for (cycle_id,) in op.get_bind().execute(text("SELECT id FROM sharingcycle ORDER BY id")):
        op.execute(f"CREATE TABLE charge_c{cycle_id} PARTITION OF charge FOR VALUES IN ({cycle_id})")
    op.execute(f"INSERT INTO charge ({COLUMNS}) SELECT {COLUMNS} FROM charge_unpartitioned")
    op.execute("DROP TABLE charge_unpartitioned")


def _sqlite_without_foreign_key() -> None:
    """SQLite cannot drop a constraint: the table is made again without it."""
    op.execute("ALTER TABLE charge RENAME TO charge_with_key")
    op.execute("DROP INDEX ix_charge_cycle_account")
    op.execute(
        "CREATE TABLE charge (cycle_id INTEGER NOT NULL, member_id INTEGER NOT NULL,"
        " account_id BIGINT NOT NULL, amount_fen BIGINT NOT NULL, subsidy_fen BIGINT NOT NULL,"
        " debit_status VARCHAR(12) DEFAULT 'due' NOT NULL,"
        " debit_attempts INTEGER DEFAULT '0' NOT NULL, debit_key VARCHAR(80),"
        " collected_fen BIGINT DEFAULT '0' NOT NULL, debited_at DATETIME,"
        " PRIMARY KEY (cycle_id, member_id))"
    )
    op.execute(f"INSERT INTO charge ({COLUMNS}) SELECT {COLUMNS} FROM charge_with_key")
    op.execute("DROP TABLE charge_with_key")
    op.execute("CREATE INDEX ix_charge_cycle_account ON charge (cycle_id, account_id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE charge_partitioned AS SELECT * FROM charge")
    op.execute("DROP TABLE charge")
    op.execute("ALTER TABLE charge_partitioned RENAME TO charge")
    op.execute("ALTER TABLE charge ADD PRIMARY KEY (cycle_id, member_id)")
    op.execute(
        "ALTER TABLE charge ADD CONSTRAINT charge_cycle_id_fkey"
        " FOREIGN KEY (cycle_id) REFERENCES sharingcycle (id)"
    )
    op.execute("CREATE INDEX ix_charge_cycle_account ON charge (cycle_id, account_id)")
