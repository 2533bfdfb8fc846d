"""Migration 0008: on PostgreSQL the search rows written before it (folded text, searched with
ILIKE) become search_text() words with a generated tsvector column and a GIN index, and the
repository's search finds them; on SQLite nothing changes."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from exobot.db.engine import create_engine, sync_url
from exobot.db.migrate import upgrade
from exobot.db.repository import SqlRepository, fold, search_rowid

ROWS = [
    (1, 0, "Connexió tallada a l'Oficina"),
    (1, 5, "Re: connexió — en Martí diu: «no va» (jordi@example.org)"),
    (2, 0, "Factura duplicada"),
]


def _seed(url: str) -> None:
    """Two tickets and their search rows as revision 0007 wrote them."""
    engine = sa.create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        for number in (1, 2):
            conn.execute(
                sa.text(
                    "INSERT INTO tickets (id, title, requestor, queue, status, language,"
                    " created_at, updated_at) VALUES (:i, 'x', 'marta@example.net',"
                    " 'suport', 'open', 'ca', :n, :n)"
                ),
                {"i": number, "n": "2026-05-04T10:00:00+00:00" if sqlite else "2026-05-04"},
            )
        for ticket, entry, content in ROWS:
            if sqlite:
                conn.execute(
                    sa.text(
                        "INSERT INTO search_index (rowid, ticket_id, entry_id, content)"
                        " VALUES (:r, :t, :e, :c)"
                    ),
                    {"r": search_rowid(ticket, entry), "t": ticket, "e": entry, "c": content},
                )
            else:
                conn.execute(
                    sa.text(
                        "INSERT INTO search_index (ticket_id, entry_id, content)"
                        " VALUES (:t, :e, :c)"
                    ),
                    {"t": ticket, "e": entry, "c": fold(content)},
                )
    engine.dispose()


async def test_migration_makes_old_rows_searchable(db_url, backend):
    await asyncio.to_thread(upgrade, db_url, "0007")
    await asyncio.to_thread(_seed, db_url)
    await asyncio.to_thread(upgrade, db_url)

    engine = create_engine(db_url)
    repo = SqlRepository(engine)
    try:
        assert await repo.search("connexio") == [1]
        assert await repo.search("MARTI example") == [1]
        assert await repo.search("oficina connexió") == [1]
        assert await repo.search("duplicada") == [2]
        assert await repo.search("duplicad") == []
        if backend == "postgresql":
            async with repo.connection() as conn:
                contents = (
                    (
                        await conn.execute(
                            sa.text("SELECT content FROM search_index ORDER BY ticket_id, entry_id")
                        )
                    )
                    .scalars()
                    .all()
                )
                assert contents == [
                    "connexio tallada a l oficina",
                    "re connexio en marti diu no va jordi example org",
                    "factura duplicada",
                ]
                # The GIN index exists (with three rows the planner may rightly not use it).
                names = (
                    (
                        await conn.execute(
                            sa.text(
                                "SELECT indexname FROM pg_indexes WHERE tablename = 'search_index'"
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
                assert "ix_search_index_tsv" in names
    finally:
        await engine.dispose()
