"""The small key-value state table: IMAP positions, the generated HMAC secret."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.db.tables import StateRow

S = StateRow.__table__


async def get_state(conn: AsyncConnection, key: str) -> str | None:
    """The value stored under `key`, or None."""
    return (await conn.execute(select(S.c.value).where(S.c.key == key))).scalar_one_or_none()


async def set_state(conn: AsyncConnection, key: str, value: str) -> None:
    """Store `value` under `key`, replacing what was there."""
    if conn.dialect.name == "postgresql":
        # Update-then-insert races there: a concurrent writer's uncommitted row is invisible
        # to the UPDATE and makes the INSERT fail (SQLite's BEGIN IMMEDIATE serialises them).
        stmt = pg_insert(S).values(key=key, value=value)
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=[S.c.key], set_={"value": value})
        )
        return
    result = await conn.execute(update(S).where(S.c.key == key).values(value=value))
    if result.rowcount == 0:
        await conn.execute(S.insert().values(key=key, value=value))
