"""procedures: the fingerprint of the request whose idempotency key an event records

An API request's Idempotency-Key sent again with a different request (another ticket, type
or note, another procedure, done instead of cancel) was taken for a retry of the first and
nothing was done. The API's routes now record, next to `request_key`, the request's
fingerprint (`exobot.web.api.request_hash`: its method, path and body), and a key found with
another fingerprint is refused (422 `key_reused`), as the core's handled_keys does (its
migration 0009). Null for the events written before this revision and for the keys of chat
commands and web forms, which have no fingerprint: a request repeating such a key stays a
retry.

Revision ID: procedures_0003
Revises: procedures_0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "procedures_0003"
down_revision = "procedures_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable `request_hash` to procedures_events (no index: it is only read with
    the event its unique `request_key` finds)."""
    with op.batch_alter_table("procedures_events") as batch:
        batch.add_column(sa.Column("request_hash", sa.String(), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("procedures_events") as batch:
        batch.drop_column("request_hash")
