"""connectivity: monitors, rounds and alert state

Revision ID: connectivity_0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "connectivity_0001"
down_revision = None
branch_labels = ("connectivity",)
depends_on = None


def upgrade() -> None:
    """Create the connectivity_monitors, connectivity_rounds and connectivity_alerts tables."""
    op.create_table(
        "connectivity_monitors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("started_by", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(length=20), nullable=True),
        sa.Column("last_round_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_connectivity_monitors_running",
        "connectivity_monitors",
        ["ticket", "target"],
        unique=True,
        sqlite_where=sa.text("stopped_at IS NULL"),
        postgresql_where=sa.text("stopped_at IS NULL"),
    )
    op.create_table(
        "connectivity_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("monitor_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("rtts", sa.Text(), nullable=False),
        sa.Column("median", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["monitor_id"], ["connectivity_monitors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_connectivity_rounds_monitor_at", "connectivity_rounds", ["monitor_id", "at"]
    )
    op.create_index("ix_connectivity_rounds_at", "connectivity_rounds", ["at"])
    op.create_table(
        "connectivity_alerts",
        sa.Column("monitor_id", sa.Integer(), nullable=False),
        sa.Column("in_alert", sa.Boolean(), nullable=False),
        sa.Column("lossy_rounds", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["monitor_id"], ["connectivity_monitors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("monitor_id"),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("connectivity_alerts")
    op.drop_index("ix_connectivity_rounds_at", table_name="connectivity_rounds")
    op.drop_index("ix_connectivity_rounds_monitor_at", table_name="connectivity_rounds")
    op.drop_table("connectivity_rounds")
    op.drop_index("uq_connectivity_monitors_running", table_name="connectivity_monitors")
    op.drop_table("connectivity_monitors")
