"""review tasks: a claim waiting for a person, with its deadlines, assignee and first decision

Revision ID: 0008_review_tasks
Revises: 0007_wind_down
Create Date: 2026-12-07 15:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.models

revision: str = "0008_review_tasks"
down_revision: str | None = "0007_wind_down"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    moment = domain.models.UTCDateTime(timezone=True)
    op.create_table(
        "reviewtask",
        sa.Column("claim_id", sa.BigInteger(), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("opened_at", moment, nullable=False),
        sa.Column("escalate_at", moment, nullable=False),
        sa.Column("due_at", moment, nullable=False),
        sa.Column("escalated_at", moment, nullable=True),
        sa.Column("assigned_to", sa.String(length=64), nullable=True),
        sa.Column("assigned_at", moment, nullable=True),
        sa.Column("first_reviewer", sa.String(length=64), nullable=True),
        sa.Column("first_approve", sa.Boolean(), nullable=True),
        sa.Column("first_reason", sa.String(length=40), nullable=True),
        sa.Column("first_note", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["claim_id"], ["claim.id"]),
        sa.PrimaryKeyConstraint("claim_id"),
    )
    op.create_index("ix_reviewtask_plan_due", "reviewtask", ["plan", "due_at"])
    # Claims already waiting for a person get their task from the beat's next sweep
    # (domain.services.review.open_tasks), with the plan's deadlines from then.


def downgrade() -> None:
    op.drop_index("ix_reviewtask_plan_due", table_name="reviewtask")
    op.drop_table("reviewtask")
