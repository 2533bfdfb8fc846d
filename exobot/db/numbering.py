"""Ticket numbers the database assigns next: raised (never lowered) for imports and for
`tickets.first_number`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from exobot.core.references import is_stored_id


async def next_number(conn: Any) -> int:
    """The number the next automatically numbered ticket gets (on PostgreSQL a concurrent
    insert may take it first)."""
    if conn.dialect.name == "sqlite":
        seq = (
            await conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'tickets'"))
        ).scalar_one_or_none()
        highest = (await conn.execute(text("SELECT MAX(id) FROM tickets"))).scalar_one()
        return max(seq or 0, highest or 0) + 1
    # The sequence's name comes from the catalog, never from input.
    sequence = await _pg_sequence(conn)
    row = (await conn.execute(text(f"SELECT last_value, is_called FROM {sequence}"))).one()
    return row.last_value + 1 if row.is_called else row.last_value


async def ensure_next_number(conn: Any, at_least: int) -> int:
    """Make the next automatically assigned ticket number at least `at_least` (it is never
    lowered); returns the next number. `conn` is a connection in a write transaction (an
    AsyncConnection, or the repository's connection inside `run()`)."""
    if not is_stored_id(at_least):
        raise ValueError(f"{at_least} is no ticket number")
    current = await next_number(conn)
    if current >= at_least:
        return current
    if conn.dialect.name == "sqlite":
        # AUTOINCREMENT takes max(sqlite_sequence.seq, max(id)) + 1; the row exists only
        # once a ticket was inserted.
        updated = await conn.execute(
            text("UPDATE sqlite_sequence SET seq = :s WHERE name = 'tickets'"),
            {"s": at_least - 1},
        )
        if not updated.rowcount:
            await conn.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES ('tickets', :s)"),
                {"s": at_least - 1},
            )
        return at_least
    # setval is not undone by a rollback: at worst a number is skipped, never reused.
    await conn.execute(
        text("SELECT setval(CAST(:q AS regclass), :n, false)"),
        {"q": await _pg_sequence(conn), "n": at_least},
    )
    return at_least


async def _pg_sequence(conn: Any) -> str:
    name = (await conn.execute(text("SELECT pg_get_serial_sequence('tickets', 'id')"))).scalar_one()
    if name is None:
        raise RuntimeError("tickets.id has no sequence")
    return str(name)
