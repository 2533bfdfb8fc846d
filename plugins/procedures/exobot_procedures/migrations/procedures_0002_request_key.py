"""procedures: the idempotency key of the request that wrote an event

A chat command, a web form or an API request delivered again after the plugin's commit and
before the channel recorded its answer runs the action's handler again with the same key
(`ActionCall.key`): recorded with the event it caused (`created`, `done`, `cancelled`), in
the same transaction, it lets the handler answer as for the first time instead of recording
a second procedure (and mailing the member twice). Null for events written without a key
(the web pages' and the API's own routes, and every event before this revision); unique
otherwise (several nulls are allowed on SQLite and PostgreSQL alike).

Revision ID: procedures_0002
Revises: procedures_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "procedures_0002"
down_revision = "procedures_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable `request_key` to procedures_events, with its unique index."""
    with op.batch_alter_table("procedures_events") as batch:
        batch.add_column(sa.Column("request_key", sa.String(), nullable=True))
    op.create_index(
        "ux_procedures_events_request_key", "procedures_events", ["request_key"], unique=True
    )


def downgrade() -> None:
    """Drop the index and the column."""
    op.drop_index("ux_procedures_events_request_key", table_name="procedures_events")
    with op.batch_alter_table("procedures_events") as batch:
        batch.drop_column("request_key")
