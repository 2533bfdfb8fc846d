"""Chat after a Matrix outage: while the homeserver is away the chat worker's rows back off
(up to an hour between attempts), so once the sync works again they are made due at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from exobot.core.service import CHAT
from exobot.db import outbox
from exobot.db.repository import SqlRepository


async def hurry_chat(repository: SqlRepository, now: datetime) -> int:
    """Make every pending chat row that waits past `now` due now, in one statement; returns
    how many. Their order is kept: the worker still takes a ticket's rows oldest first."""
    async with repository.connection() as conn:
        result = await conn.execute(
            update(outbox.O)
            .where(
                outbox.O.c.kind == CHAT,
                outbox.O.c.state == outbox.PENDING,
                outbox.O.c.next_try_at > now,
            )
            .values(next_try_at=now)
        )
    return result.rowcount or 0
