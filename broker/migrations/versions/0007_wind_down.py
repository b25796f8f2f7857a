"""wind-down: a plan's wind-down and its events, and what the platform paid in members' place

Revision ID: 0007_wind_down
Revises: 0006_proofs
Create Date: 2026-12-07 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.models

revision: str = "0007_wind_down"
down_revision: str | None = "0006_proofs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sharingcycle",
        sa.Column("platform_share_fen", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "planwinddown",
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("announce_at", domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("end_at", domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("refund_all_shares", sa.Boolean(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("scheduled_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("plan"),
    )
    op.create_table(
        "planevent",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("at", domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_planevent_plan", "planevent", ["plan"])


def downgrade() -> None:
    op.drop_index("ix_planevent_plan", table_name="planevent")
    op.drop_table("planevent")
    op.drop_table("planwinddown")
    with op.batch_alter_table("sharingcycle") as batch_op:
        batch_op.drop_column("platform_share_fen")
