"""chat: handled idempotency keys, ticket threads and posted messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from exobot.db.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "handled_keys",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("handled_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "chat_threads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("room_id", sa.String(), nullable=False),
        sa.Column("root_event_id", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("room_id", "root_event_id"),
    )
    op.create_index("ix_chat_threads_ticket_id", "chat_threads", ["ticket_id"])
    op.create_table(
        "chat_posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("outbox_id", "part"),
    )
    op.create_index("ix_chat_posts_outbox_id", "chat_posts", ["outbox_id"])


def downgrade() -> None:
    """Revert this migration."""
    op.drop_index("ix_chat_posts_outbox_id", table_name="chat_posts")
    op.drop_table("chat_posts")
    op.drop_index("ix_chat_threads_ticket_id", table_name="chat_threads")
    op.drop_table("chat_threads")
    op.drop_table("handled_keys")
