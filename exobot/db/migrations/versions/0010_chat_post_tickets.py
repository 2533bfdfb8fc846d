"""chat post tickets: chat_posts.tickets, the tickets a post named besides its row's own

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column, nullable: posts made before it named no other ticket on record (a
    digest posted earlier is not known to have listed any)."""
    with op.batch_alter_table("chat_posts") as batch:
        batch.add_column(sa.Column("tickets", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Undo this migration."""
    with op.batch_alter_table("chat_posts") as batch:
        batch.drop_column("tickets")
