"""objections: the first of two re-reviews given against an investigation's findings

Revision ID: 0011_objection_second_review
Revises: 0010_investigations
Create Date: 2026-12-07 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_objection_second_review"
down_revision: str | None = "0010_investigations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("objection") as batch_op:
        batch_op.add_column(sa.Column("first_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("first_uphold", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objection") as batch_op:
        batch_op.drop_column("first_uphold")
        batch_op.drop_column("first_by")
