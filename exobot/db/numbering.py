"""Ticket numbers the database assigns next: raised (never lowered) for imports and for
`tickets.first_number`."""

from __future__ import annotations

import asyncio
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


async def apply_first_number(conn: Any, first_number: int | None) -> bool:
    """`tickets.first_number`: on a database with no ticket yet (nor a merged number), the
    first automatic number is `first_number`. True when it was applied (or already so)."""
    if not first_number:
        return False
    tickets = (await conn.execute(text("SELECT COUNT(*) FROM tickets"))).scalar_one()
    aliases = (await conn.execute(text("SELECT COUNT(*) FROM ticket_aliases"))).scalar_one()
    if tickets or aliases:
        return False
    await ensure_next_number(conn, first_number)
    return True


def apply_first_number_blocking(conn: Any, first_number: int | None) -> bool:
    """apply_first_number on a blocking connection (the migrations' own)."""
    return asyncio.run(apply_first_number(_Awaitable(conn), first_number))


class _Awaitable:
    """A blocking connection behind the awaitable `execute` the functions above use."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run one statement now."""
        return self._conn.execute(*args, **kwargs)


async def _pg_sequence(conn: Any) -> str:
    name = (await conn.execute(text("SELECT pg_get_serial_sequence('tickets', 'id')"))).scalar_one()
    if name is None:
        raise RuntimeError("tickets.id has no sequence")
    return str(name)
