"""The sample plugin's table.

Revision ID: sample001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "sample001"
down_revision = None
branch_labels = ("sample",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sample_seen",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ticket", sa.Integer, nullable=False),
        sa.Column("what", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sample_seen")
