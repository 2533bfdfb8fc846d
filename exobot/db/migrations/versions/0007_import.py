"""import: ticket_aliases (merged numbers) and imported_records (what an import wrote)

Revision ID: 0007
Revises: 0006
Create Date: 2027-02-10
"""

import sqlalchemy as sa
from alembic import op

from exobot.db.tables import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Two tables: a merged ticket's number → the surviving ticket, and the other system's
    ids of what an import wrote (so running it again writes nothing twice)."""
    op.create_table(
        "ticket_aliases",
        sa.Column("number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_ticket_aliases_ticket_id", "ticket_aliases", ["ticket_id"])
    op.create_table(
        "imported_records",
        sa.Column("source", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), primary_key=True),
        sa.Column("external_id", sa.Text(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_imported_records_ticket_id", "imported_records", ["ticket_id"])


def downgrade() -> None:
    """Undo this migration."""
    op.drop_index("ix_imported_records_ticket_id", "imported_records")
    op.drop_table("imported_records")
    op.drop_index("ix_ticket_aliases_ticket_id", "ticket_aliases")
    op.drop_table("ticket_aliases")
