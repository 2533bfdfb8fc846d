"""mend purged entries: entries purged by an older version lose the sender's display name and
the attachments' file names they kept

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Entries are read and rewritten this many at a time (memory stays bounded on big databases).
BATCH = 500

# A frozen copy of what the retention policy purges, as it stood when this migration was
# written: the migration must keep rewriting data the same way whatever exobot.retention
# becomes later, so it neither imports it nor the model's enums.
TEXT_KINDS = ("mail_in", "automatic_in", "unverified_in", "bounce", "mail_out", "comment")
TEXT_DATA_KEYS = ("subject", "from_name")
ATTACHMENT_KEPT = ("content_type", "size")

_entries = sa.table(
    "entries",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("data", sa.JSON),
)


def upgrade() -> None:
    """Rewrite the data of every entry marked purged that still holds a name or a file name
    as a purge leaves it now, in batches by id. A no-op on a database with none (a new one,
    or one purged only by a version that already dropped them)."""
    conn = op.get_bind()
    # The JSON as text, so that one test works on SQLite (text JSON) and PostgreSQL (json):
    # a cheap filter that leaves most entries in the database; the data itself decides below.
    as_text = _entries.c.data.cast(sa.Text)
    suspect = sa.and_(
        as_text.like('%"purged"%'),
        sa.or_(*(as_text.like(f'%"{key}"%') for key in (*TEXT_DATA_KEYS, "filename"))),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(_entries.c.id, _entries.c.data)
            .where(_entries.c.id > last, _entries.c.kind.in_(TEXT_KINDS), suspect)
            .order_by(_entries.c.id)
            .limit(BATCH)
        ).all()
        for entry_id, data in rows:
            # Only the entries a purge marked: an entry whose texts are still due keeps them
            # until the retention policy purges it.
            if not isinstance(data, dict) or data.get("purged") is not True:
                continue
            mended = _purged_data(data)
            if mended != data:
                conn.execute(_entries.update().where(_entries.c.id == entry_id).values(data=mended))
        if len(rows) < BATCH:
            return
        last = rows[-1].id


def _purged_data(data: dict[str, Any]) -> dict[str, Any]:
    """An entry's data once its texts are purged: no texts, and of each attachment only what
    is not personal (a copy of exobot.retention's, frozen here)."""
    kept = {k: v for k, v in data.items() if k not in TEXT_DATA_KEYS}
    if isinstance(kept.get("attachments"), list):
        kept["attachments"] = [
            {k: a[k] for k in ATTACHMENT_KEPT if k in a} if isinstance(a, dict) else {}
            for a in kept["attachments"]
        ]
    return kept | {"purged": True}


def downgrade() -> None:
    """Nothing to undo: the names and file names dropped are gone for good (they were meant to
    be), and the older code reads the mended entries as it read those it purged itself."""
