"""proofs: sum-tree roots of each cycle and chunk, bucket roots, the log of roots and its heads

Revision ID: 0006_proofs
Revises: 0005_debit_consent
Create Date: 2026-12-06 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.models

revision: str = "0006_proofs"
down_revision: str | None = "0005_debit_consent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("charges_root", "cases_root"):
        op.add_column("sharingcycle", sa.Column(column, sa.LargeBinary(), nullable=True))
    op.add_column("sharingcycle", sa.Column("log_index", sa.BigInteger(), nullable=True))
    op.add_column("chargechunk", sa.Column("root", sa.LargeBinary(), nullable=True))
    op.create_table(
        "proofbucket",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["sharingcycle.id"]),
        sa.PrimaryKeyConstraint("cycle_id", "chunk_no", "bucket"),
    )
    op.create_table(
        "logentry",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("at", domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["sharingcycle.id"]),
        sa.PrimaryKeyConstraint("leaf_index"),
        sa.UniqueConstraint("cycle_id"),
    )
    op.create_table(
        "loghead",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )


def downgrade() -> None:
    op.drop_table("loghead")
    op.drop_table("logentry")
    op.drop_table("proofbucket")
    with op.batch_alter_table("chargechunk") as batch_op:
        batch_op.drop_column("root")
    with op.batch_alter_table("sharingcycle") as batch_op:
        for column in ("log_index", "cases_root", "charges_root"):
            batch_op.drop_column(column)
