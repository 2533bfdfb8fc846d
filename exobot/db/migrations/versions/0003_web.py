"""web: browser sessions, one-time login links, API tokens, direct-message rooms

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from exobot.db.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this migration."""
    # A retried request (a form sent twice, an API call with the same Idempotency-Key) learns
    # which ticket the first one made.
    with op.batch_alter_table("handled_keys") as batch:
        batch.add_column(sa.Column("ticket_id", sa.Integer(), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("csrf", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"])
    op.create_table(
        "login_links",
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "direct_rooms",
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("room_id", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    # The web's ticket list filters by queue, status and owner, newest first, or sorts by last
    # change. The owner index gets the status and the number (and replaces the owner-only one),
    # so that "mine" and "unowned" with statuses need no sort; the same for a status alone, which
    # SQLite without ANALYZE statistics would otherwise sort (e.g. every resolved ticket).
    op.create_index("ix_tickets_updated_at", "tickets", ["updated_at"])
    op.create_index("ix_tickets_queue_status_id", "tickets", ["queue", "status", "id"])
    op.create_index("ix_tickets_owner_status_id", "tickets", ["owner", "status", "id"])
    op.create_index("ix_tickets_status_id", "tickets", ["status", "id"])
    op.drop_index("ix_tickets_owner", table_name="tickets")
    _renumber_search_index()


def _renumber_search_index() -> None:
    """On SQLite, give every search_index row the rowid (ticket << 32) + entry id
    (repository.search_rowid), so that a search reads the matching tickets from the FTS index
    alone. The rows stay the same; the older code does not depend on rowids, so the downgrade
    leaves them."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TEMP TABLE search_rows AS SELECT ticket_id, entry_id, content FROM search_index"
    )
    op.execute("DELETE FROM search_index")
    op.execute(
        "INSERT INTO search_index (rowid, ticket_id, entry_id, content)"
        " SELECT (ticket_id << 32) + entry_id, ticket_id, entry_id, content FROM search_rows"
        " ORDER BY 1"
    )
    op.execute("DROP TABLE search_rows")


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("handled_keys") as batch:
        batch.drop_column("ticket_id")
    op.create_index("ix_tickets_owner", "tickets", ["owner"])
    op.drop_index("ix_tickets_status_id", table_name="tickets")
    op.drop_index("ix_tickets_owner_status_id", table_name="tickets")
    op.drop_index("ix_tickets_queue_status_id", table_name="tickets")
    op.drop_index("ix_tickets_updated_at", table_name="tickets")
    op.drop_table("direct_rooms")
    op.drop_table("api_tokens")
    op.drop_table("login_links")
    op.drop_index("ix_web_sessions_expires_at", table_name="web_sessions")
    op.drop_table("web_sessions")
