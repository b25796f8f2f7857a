"""api requests: members' writes by Idempotency-Key

Revision ID: 0004_api_requests
Revises: 0003_charges_archived_at
Create Date: 2026-12-04 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import domain.models

revision: str = "0004_api_requests"
down_revision: str | None = "0003_charges_archived_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apirequest",
        sa.Column("member_ref", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("key", sqlmodel.AutoString(length=128), nullable=False),
        sa.Column("body_sha256", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("submission_id", sqlmodel.AutoString(length=128), nullable=False),
        sa.Column("created_at", domain.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("member_ref", "key"),
    )


def downgrade() -> None:
    op.drop_table("apirequest")
