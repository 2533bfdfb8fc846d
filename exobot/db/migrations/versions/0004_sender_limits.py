"""sender limits: an index to count what one sender opened in the last hour

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this migration."""
    # mail.new_tickets_per_sender_per_hour counts a sender's recent entries on every new mail.
    op.create_index("ix_entries_actor_created", "entries", ["actor", "created_at"])


def downgrade() -> None:
    """Undo this migration."""
    op.drop_index("ix_entries_actor_created", table_name="entries")
