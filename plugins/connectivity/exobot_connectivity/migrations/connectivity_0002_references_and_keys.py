"""connectivity: one running monitor per reference target; the requests' idempotency keys

- The unique index on running (ticket, target) did not cover the reference targets (ticket
  NULL: NULLs are distinct), so two instances starting at once could both start the same
  reference target. The duplicates already running are stopped (the oldest is kept) and the
  index becomes one on (coalesce(ticket, 0), target), which covers them (ticket numbers
  start at 1).
- A chat command, form or API request delivered again after the plugin's commit (and before
  the channel recorded its answer) runs its handler again with the same `ActionCall.key`:
  `request_key` (unique) records the request that started a monitor, `stop_key` the one that
  stopped it, and `connectivity_graph_requests` the `!graph` requests that posted a graph, so
  that such a request is answered as the first time without starting, stopping or posting
  again.

Revision ID: connectivity_0002
Revises: connectivity_0001
Create Date: 2026-12-03
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "connectivity_0002"
down_revision = "connectivity_0001"
branch_labels = None
depends_on = None

RUNNING = "stopped_at IS NULL"


def upgrade() -> None:
    """Stop the duplicate reference monitors, replace the running index, add the keys."""
    _stop_duplicate_references()
    op.drop_index("uq_connectivity_monitors_running", table_name="connectivity_monitors")
    op.create_index(
        "uq_connectivity_monitors_running_target",
        "connectivity_monitors",
        [sa.text("coalesce(ticket, 0)"), "target"],
        unique=True,
        sqlite_where=sa.text(RUNNING),
        postgresql_where=sa.text(RUNNING),
    )
    op.add_column("connectivity_monitors", sa.Column("request_key", sa.String(), nullable=True))
    op.add_column("connectivity_monitors", sa.Column("stop_key", sa.String(), nullable=True))
    op.create_index(
        "ux_connectivity_monitors_request_key",
        "connectivity_monitors",
        ["request_key"],
        unique=True,
    )
    op.create_index("ix_connectivity_monitors_stop_key", "connectivity_monitors", ["stop_key"])
    op.create_table(
        "connectivity_graph_requests",
        sa.Column("request_key", sa.String(), nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_key"),
    )


def _stop_duplicate_references() -> None:
    """Stop every running reference monitor that has an older running twin (same target)."""
    monitors = sa.table(
        "connectivity_monitors",
        sa.column("id", sa.Integer()),
        sa.column("ticket", sa.Integer()),
        sa.column("target", sa.String()),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("stopped_at", sa.DateTime(timezone=True)),
        sa.column("stop_reason", sa.String()),
    )
    older = monitors.alias("older")
    has_older = (
        sa.select(older.c.id)
        .where(
            older.c.ticket.is_(None),
            older.c.stopped_at.is_(None),
            older.c.target == monitors.c.target,
            sa.or_(
                older.c.started_at < monitors.c.started_at,
                sa.and_(older.c.started_at == monitors.c.started_at, older.c.id < monitors.c.id),
            ),
        )
        .exists()
    )
    op.execute(
        sa.update(monitors)
        .where(monitors.c.ticket.is_(None), monitors.c.stopped_at.is_(None), has_older)
        .values(stopped_at=datetime.now(UTC), stop_reason="config")
    )


def downgrade() -> None:
    """Drop the keys and the graph requests; back to the index on running (ticket, target)."""
    op.drop_table("connectivity_graph_requests")
    op.drop_index("ix_connectivity_monitors_stop_key", table_name="connectivity_monitors")
    op.drop_index("ux_connectivity_monitors_request_key", table_name="connectivity_monitors")
    op.drop_index(
        "uq_connectivity_monitors_running_target", table_name="connectivity_monitors"
    )
    with op.batch_alter_table("connectivity_monitors") as batch:
        batch.drop_column("stop_key")
        batch.drop_column("request_key")
    op.create_index(
        "uq_connectivity_monitors_running",
        "connectivity_monitors",
        ["ticket", "target"],
        unique=True,
        sqlite_where=sa.text(RUNNING),
        postgresql_where=sa.text(RUNNING),
    )
