"""cycle charges_archived_at: when a cycle's charge partition was detached

Revision ID: 0003_charges_archived_at
Revises: 0002_charge_partitions
Create Date: 2026-11-29 09:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.models

revision: str = "0003_charges_archived_at"
down_revision: str | None = "0002_charge_partitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sharingcycle",
        sa.Column("charges_archived_at", domain.models.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("sharingcycle") as batch_op:
        batch_op.drop_column("charges_archived_at")
