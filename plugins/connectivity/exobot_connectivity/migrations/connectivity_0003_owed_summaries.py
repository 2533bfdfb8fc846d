"""connectivity: the closing summary owed by the monitors a ticket's closing stopped

A ticket resolved or rejected stops its monitors, then posts their summary in its thread;
exobot dying in between lost the summary (nothing runs any more, so nothing looks again).
`summary_key` is set in the same UPDATE that stops them, to the post key of their summary,
and cleared once that summary is queued: what is still set after a crash is posted again,
under the same key (queued once). Monitors stopped before this revision owe nothing.

Revision ID: connectivity_0003
Revises: connectivity_0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "connectivity_0003"
down_revision = "connectivity_0002"
branch_labels = None
depends_on = None

OWED = "summary_key IS NOT NULL"


def upgrade() -> None:
    """Add summary_key and its index (only the rows that owe a summary)."""
    op.add_column("connectivity_monitors", sa.Column("summary_key", sa.String(), nullable=True))
    op.create_index(
        "ix_connectivity_monitors_summary_key",
        "connectivity_monitors",
        ["summary_key"],
        sqlite_where=sa.text(OWED),
        postgresql_where=sa.text(OWED),
    )


def downgrade() -> None:
    """Drop summary_key and its index."""
    op.drop_index("ix_connectivity_monitors_summary_key", table_name="connectivity_monitors")
    # ALTER TABLE … DROP COLUMN, not a batch: SQLite's batch rebuilds the table from its
    # reflection, which loses the expression index on running (coalesce(ticket, 0), target).
    op.drop_column("connectivity_monitors", "summary_key")
