"""debit consent per member, and an index of each payer's family

Revision ID: 0005_debit_consent
Revises: 0004_api_requests
Create Date: 2026-12-04 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import domain.models

revision: str = "0005_debit_consent"
down_revision: str | None = "0004_api_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "debitconsent",
        sa.Column("member_id", domain.models.ID, nullable=False),
        sa.Column("version", sqlmodel.AutoString(length=32), nullable=False),
        sa.Column("consented_at", domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("given_by", sqlmodel.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_index(
        "ix_member_payer_id",
        "member",
        ["payer_id"],
        postgresql_where=sa.text("payer_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_member_payer_id", table_name="member")
    op.drop_table("debitconsent")
