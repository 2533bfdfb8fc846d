"""fulltext: on PostgreSQL, a tsvector column with a GIN index over search_index (SQLite: nothing)

Revision ID: 0008
Revises: 0007
Create Date: 2027-03-01
"""

import sqlalchemy as sa
from alembic import op

from exobot.db.repository import search_text

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BATCH = 2000


def upgrade() -> None:
    """PostgreSQL searched search_index with ILIKE over folded text, a scan of every row. Now:
    the unaccent extension, an IMMUTABLE wrapper of it (unaccent() itself is STABLE, since its
    dictionary could change, and a generated column needs IMMUTABLE), the rows' content
    rewritten as search_text() words, and a generated tsvector column (the `simple`
    configuration over the unaccented words) with a GIN index; and an index on entries'
    (kind, ticket_id). SQLite's FTS5 needs nothing."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    schema = conn.execute(
        sa.text(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'unaccent'"
        )
    ).scalar_one()
    # Schema-qualified, so that the function works whatever the caller's search_path.
    op.execute(
        "CREATE OR REPLACE FUNCTION f_unaccent(text) RETURNS text"
        " LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS"
        f" $$ SELECT {schema}.unaccent('{schema}.unaccent'::regdictionary, $1) $$"
    )
    _rewrite_contents(conn)
    op.execute(
        "ALTER TABLE search_index ADD COLUMN tsv tsvector"
        " GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, f_unaccent(content))) STORED"
    )
    op.execute("CREATE INDEX ix_search_index_tsv ON search_index USING gin (tsv)")
    op.execute("ANALYZE search_index")
    # Every ticket list asks which tickets hold unaccepted mail (entries of one kind):
    # PostgreSQL read the whole (ticket_id, kind) index for it, 40 ms at 500,000 entries.
    op.create_index("ix_entries_kind_ticket", "entries", ["kind", "ticket_id"])


def _rewrite_contents(conn: sa.Connection) -> None:
    """Every row's content (folded text until now) as search_text() words, in batches."""
    last = 0
    while True:
        rows = conn.execute(
            sa.text("SELECT id, content FROM search_index WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            return
        changed = [{"i": r.id, "c": search_text(r.content)} for r in rows]
        changed = [c for c, r in zip(changed, rows, strict=True) if c["c"] != r.content]
        if changed:
            conn.execute(sa.text("UPDATE search_index SET content = :c WHERE id = :i"), changed)
        last = rows[-1].id


def downgrade() -> None:
    """Undo this migration (the rows keep their search_text() words, which ILIKE also finds)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_entries_kind_ticket", "entries")
    op.execute("DROP INDEX IF EXISTS ix_search_index_tsv")
    op.execute("ALTER TABLE search_index DROP COLUMN IF EXISTS tsv")
    op.execute("DROP FUNCTION IF EXISTS f_unaccent(text)")
