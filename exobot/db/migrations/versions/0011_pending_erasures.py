"""pending erasures: the plugins' part of an interrupted privacy erasure, finished next time

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from exobot.db.tables import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table (empty: an erasure interrupted before it cannot be known)."""
    op.create_table(
        "pending_erasures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("tickets", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    """Undo this migration."""
    op.drop_table("pending_erasures")
