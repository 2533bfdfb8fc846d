"""Chat after a Matrix outage: while the homeserver is away the chat worker's rows back off
(up to an hour between attempts), so once the sync works again they are made due at once and
their count of attempts starts over; and while it is away no row is given up (an outage of
hours is no refusal of the row)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import update

from exobot.core.service import CHAT
from exobot.db import outbox
from exobot.db.repository import SqlRepository
from exobot.delivery import RetryPolicy


async def hurry_chat(repository: SqlRepository, now: datetime) -> int:
    """Make every pending chat row that waits past `now` due now, its attempts counted from
    zero again (they failed because the homeserver was away), in one statement; returns how
    many. Their order is kept: the worker still takes a ticket's rows oldest first."""
    async with repository.connection() as conn:
        result = await conn.execute(
            update(outbox.O)
            .where(
                outbox.O.c.kind == CHAT,
                outbox.O.c.state == outbox.PENDING,
                outbox.O.c.next_try_at > now,
            )
            .values(next_try_at=now, attempts=0)
        )
    return result.rowcount or 0


class PatientRetry:
    """The chat worker's retry policy: `policy`'s backoff, and its `max_attempts` except
    while `unreachable()` (the bot's sync is failing), when no row reaches its last attempt."""

    def __init__(self, policy: RetryPolicy, unreachable: Callable[[], bool]) -> None:
        self.policy = policy
        self.unreachable = unreachable

    @property
    def max_attempts(self) -> int:
        """The policy's, or no limit while the homeserver is away."""
        return sys.maxsize if self.unreachable() else self.policy.max_attempts

    @property
    def base(self) -> timedelta:
        """The first wait."""
        return self.policy.base

    @property
    def maximum(self) -> timedelta:
        """The longest wait."""
        return self.policy.maximum

    def delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt (the policy's)."""
        return self.policy.delay(attempts)
