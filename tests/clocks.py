"""Clocks for tests: time moves when a test says so, never by waiting.

`FakeClock` stands still until `advance()`: for unit tests that check exact times.
`ShiftedClock` is the system time plus an offset that `advance()` grows: for a whole running
App (give it to `make_instance(clock=...)`), where the servers' own timeouts and the
workers' short waits still need time to pass, but an alert, a retry or an expiry hours away
is reached at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 3, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """The current fake time."""
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` or by timedelta keyword arguments (`advance(hours=2)`)."""
        self._now += (delta or timedelta()) + timedelta(**kwargs)
        return self._now


class ShiftedClock:
    """The system time, moved forward by everything `advance()` was given."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        """The system time plus the offset."""
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Jump forward by `delta` or by timedelta keyword arguments; returns the new now."""
        self.offset += (delta or timedelta()) + timedelta(**kwargs)
        return self.now()
