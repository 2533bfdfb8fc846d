"""saved replies: the table

Revision ID: saved_replies_0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "saved_replies_0001"
down_revision = None
branch_labels = ("saved-replies",)
depends_on = None


def upgrade() -> None:
    """Create the saved_replies table."""
    op.create_table(
        "saved_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "language", name="uq_saved_replies_name_language"),
    )


def downgrade() -> None:
    """Drop the saved_replies table."""
    op.drop_table("saved_replies")
