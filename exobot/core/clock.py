"""The one clock: every part that needs the time asks an injected `Clock`, never the system.

`App` makes one `SystemClock` (or takes the one a test gives it) and hands it to the service,
the mail processor, the outbox workers, the bot, the web and the jobs, so a test can move time
forward (an alert, a retry, an expiry) instead of waiting for it. Database helpers take `now`
from their caller instead of reading a clock themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """The current time (a fake one in tests)."""

    def now(self) -> datetime:
        """An aware datetime in UTC."""


def utc(moment: datetime | None) -> datetime | None:
    """`moment` in UTC (a naive time from storage is UTC already)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Now, in UTC."""
        return datetime.now(UTC)
