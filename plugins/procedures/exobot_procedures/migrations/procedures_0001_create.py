"""procedures: procedures, their events, the member directory and its changes

Revision ID: procedures_0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "procedures_0001"
down_revision = None
branch_labels = ("procedures",)
depends_on = None


def upgrade() -> None:
    """Create the plugin's five tables (none refers to the core's tickets)."""
    op.create_table(
        "procedures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=254), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=True),
        sa.Column("ticket", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("asked_by", sa.String(length=255), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_by", sa.String(length=255), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_procedures_ticket", "procedures", ["ticket"])
    op.create_index("ix_procedures_member", "procedures", ["member"])
    op.create_index("ix_procedures_state_asked", "procedures", ["state", "asked_at"])
    op.create_index("ix_procedures_asked", "procedures", ["asked_at"])
    op.create_table(
        "procedures_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("procedure_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("effects", sa.Text(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("member", sa.String(length=254), nullable=True),
        sa.ForeignKeyConstraint(["procedure_id"], ["procedures.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_procedures_events_procedure", "procedures_events", ["procedure_id"])
    op.create_index("ix_procedures_events_settled", "procedures_events", ["settled_at"])
    op.create_table(
        "procedures_members",
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=True),
        sa.Column("address2", sa.String(length=254), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_index("ix_procedures_members_address", "procedures_members", ["address"])
    op.create_index("ix_procedures_members_address2", "procedures_members", ["address2"])
    op.create_table(
        "procedures_member_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("change", sa.String(length=12), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_procedures_member_changes_number", "procedures_member_changes", ["number"]
    )
    op.create_table(
        "procedures_ticket_members",
        sa.Column("ticket", sa.Integer(), nullable=False),
        sa.Column("member", sa.String(length=64), nullable=False),
        sa.Column("linked_by", sa.String(length=255), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket"),
    )


def downgrade() -> None:
    """Drop the five tables."""
    op.drop_table("procedures_ticket_members")
    op.drop_index("ix_procedures_member_changes_number", table_name="procedures_member_changes")
    op.drop_table("procedures_member_changes")
    op.drop_index("ix_procedures_members_address2", table_name="procedures_members")
    op.drop_index("ix_procedures_members_address", table_name="procedures_members")
    op.drop_table("procedures_members")
    op.drop_index("ix_procedures_events_settled", table_name="procedures_events")
    op.drop_index("ix_procedures_events_procedure", table_name="procedures_events")
    op.drop_table("procedures_events")
    for name in ("ix_procedures_asked", "ix_procedures_state_asked", "ix_procedures_member",
                 "ix_procedures_ticket"):
        op.drop_index(name, table_name="procedures")
    op.drop_table("procedures")
