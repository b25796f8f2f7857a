"""investigations: cases for flagged or disputed claims, their notes and evidence files

Revision ID: 0010_investigations
Revises: 0009_claim_flags
Create Date: 2026-12-07 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.models

revision: str = "0010_investigations"
down_revision: str | None = "0009_claim_flags"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    moment = domain.models.UTCDateTime(timezone=True)
    op.create_table(
        "investigation",
        sa.Column("id", ID, nullable=False),
        sa.Column("claim_id", sa.BigInteger(), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("why", sa.String(length=500), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("opened_at", moment, nullable=False),
        sa.Column("due_at", moment, nullable=False),
        sa.Column("investigator", sa.String(length=64), nullable=True),
        sa.Column("firm", sa.String(length=100), nullable=True),
        sa.Column("assigned_at", moment, nullable=True),
        sa.Column("closed_at", moment, nullable=True),
        sa.Column("finding", sa.String(length=16), nullable=True),
        sa.Column("finding_reason", sa.String(length=40), nullable=True),
        sa.Column("summary", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["claim_id"], ["claim.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_investigation_claim_id", "investigation", ["claim_id"])
    op.create_index(
        "ux_investigation_open_claim",
        "investigation",
        ["claim_id"],
        unique=True,
        sqlite_where=sa.text("closed_at IS NULL"),
        postgresql_where=sa.text("closed_at IS NULL"),
    )
    op.create_table(
        "investigationnote",
        sa.Column("id", ID, nullable=False),
        sa.Column("investigation_id", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("at", moment, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["investigation_id"], ["investigation.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_investigationnote_investigation_id", "investigationnote", ["investigation_id"]
    )
    op.create_table(
        "evidencefile",
        sa.Column("id", ID, nullable=False),
        sa.Column("investigation_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", moment, nullable=False),
        sa.ForeignKeyConstraint(["investigation_id"], ["investigation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("investigation_id", "sha256"),
    )
    op.create_index("ix_evidencefile_investigation_id", "evidencefile", ["investigation_id"])


def downgrade() -> None:
    op.drop_index("ix_evidencefile_investigation_id", table_name="evidencefile")
    op.drop_table("evidencefile")
    op.drop_index("ix_investigationnote_investigation_id", table_name="investigationnote")
    op.drop_table("investigationnote")
    op.drop_index("ux_investigation_open_claim", table_name="investigation")
    op.drop_index("ix_investigation_claim_id", table_name="investigation")
    op.drop_table("investigation")
