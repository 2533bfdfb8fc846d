"""The small key-value state table: IMAP positions, the generated HMAC secret."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from exobot.db.engine import upsert_insert
from exobot.db.tables import StateRow

S = StateRow.__table__


async def get_state(conn: AsyncConnection, key: str) -> str | None:
    """The value stored under `key`, or None."""
    return (await conn.execute(select(S.c.value).where(S.c.key == key))).scalar_one_or_none()


async def set_state(conn: AsyncConnection, key: str, value: str) -> None:
    """Store `value` under `key`, replacing what was there."""
    # One statement: update-then-insert would race between concurrent PostgreSQL writers.
    stmt = upsert_insert(conn, S).values(key=key, value=value)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[S.c.key], set_={"value": value}))


async def set_state_once(conn: AsyncConnection, key: str, value: str) -> str:
    """Store `value` under `key` unless a value is there already; returns the stored one
    (two instances starting together agree on the first writer's value)."""
    stmt = upsert_insert(conn, S).values(key=key, value=value)
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=[S.c.key]))
    return await get_state(conn, key)
