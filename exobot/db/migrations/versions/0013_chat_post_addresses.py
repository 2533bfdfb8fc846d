"""chat post addresses: chat_posts.addresses, digests of the addresses a post showed

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column, nullable: what the posts made before it showed is not on record (an
    erasure searches their rows' texts for the person, as before)."""
    with op.batch_alter_table("chat_posts") as batch:
        batch.add_column(sa.Column("addresses", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Undo this migration."""
    with op.batch_alter_table("chat_posts") as batch:
        batch.drop_column("addresses")
