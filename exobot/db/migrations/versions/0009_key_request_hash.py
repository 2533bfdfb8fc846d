"""key request hash: handled_keys.request_hash, the fingerprint of the request a key came with

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column, nullable: the keys recorded before it have no fingerprint, and a retry
    of theirs is taken as a retry (as are chat's and the web forms' keys, which never have
    one)."""
    with op.batch_alter_table("handled_keys") as batch:
        batch.add_column(sa.Column("request_hash", sa.String(), nullable=True))


def downgrade() -> None:
    """Undo this migration."""
    with op.batch_alter_table("handled_keys") as batch:
        batch.drop_column("request_hash")
