"""claim flags: the fraud flags a claim raised, and the indexes their counts read

Revision ID: 0009_claim_flags
Revises: 0008_review_tasks
Create Date: 2026-12-07 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.models

revision: str = "0009_claim_flags"
down_revision: str | None = "0008_review_tasks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    moment = domain.models.UTCDateTime(timezone=True)
    op.create_table(
        "claimflag",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("claim_id", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("raised_at", moment, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("settled_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["claim_id"], ["claim.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_claimflag_claim_id", "claimflag", ["claim_id"])
    op.create_index("ix_claim_hospital_received", "claim", ["hospital", "received_at"])
    op.create_index("ix_claim_icd10_received", "claim", ["icd10", "received_at"])
    op.create_index("ix_claim_received", "claim", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_claim_received", table_name="claim")
    op.drop_index("ix_claim_icd10_received", table_name="claim")
    op.drop_index("ix_claim_hospital_received", table_name="claim")
    op.drop_index("ix_claimflag_claim_id", table_name="claimflag")
    op.drop_table("claimflag")
