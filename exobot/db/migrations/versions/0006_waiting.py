"""waiting: tickets.last_answer_at, when we last replied to or notified the member

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-20
"""

import sqlalchemy as sa
from alembic import op

from exobot.db.tables import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_tickets = sa.table(
    "tickets", sa.column("id", sa.Integer), sa.column("last_answer_at", UtcDateTime())
)
_entries = sa.table(
    "entries",
    sa.column("ticket_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("created_at", UtcDateTime()),
    sa.column("data", sa.JSON),
)


def upgrade() -> None:
    """Add the column and fill it from the history: the latest reply or notice (a mail out
    with the 'reply' template; acknowledgements, advice and resolved notices do not count)."""
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("last_answer_at", UtcDateTime(), nullable=True))
    conn = op.get_bind()
    latest: dict[int, object] = {}
    rows = conn.execute(
        sa.select(_entries.c.ticket_id, _entries.c.created_at, _entries.c.data).where(
            _entries.c.kind == "mail_out"
        )
    )
    # Streamed row by row; only one time per ticket is kept.
    for row in rows:
        if (row.data or {}).get("template") != "reply":
            continue
        seen = latest.get(row.ticket_id)
        if seen is None or row.created_at > seen:
            latest[row.ticket_id] = row.created_at
    for ticket, when in latest.items():
        conn.execute(_tickets.update().where(_tickets.c.id == ticket).values(last_answer_at=when))


def downgrade() -> None:
    """Undo this migration."""
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("last_answer_at")
